"""Gaussian mixture maths of the AEGMM detector, in float64 TensorFlow.

A mixture of ``K`` full-covariance Gaussians over ``D``-dimensional points ``z`` is fitted from
*soft memberships* ``gamma`` (``N × K``, rows summing to 1) produced by a network, not by EM:

- weights      ``phi_k = Σ_i γ_ik / N``
- means        ``mu_k  = Σ_i γ_ik z_i / Σ_i γ_ik``
- covariances  ``cov_k = Σ_i γ_ik (z_i − mu_k)(z_i − mu_k)ᵀ / Σ_i γ_ik``

The *sample energy* is the negative log-likelihood of a point under the mixture::

    E(z) = −log Σ_k phi_k · N(z | mu_k, cov_k)
         = −logsumexp_k [ log phi_k − ½‖L_k⁻¹(z − mu_k)‖² − Σ_d log L_k,dd − (D/2) log 2π ]

with ``L_k`` the Cholesky factor of ``cov_k``. Everything here runs in float64 and works inside
``tf.function``. Covariances are factorised by :func:`cholesky_with_jitter`, which adds the smallest
diagonal jitter from a growing ladder that makes the factorisation succeed.

For the whole-training-set estimate after training, :func:`sufficient_statistics` gives
``(Σγ, Σγz, Σγzzᵀ)`` of one batch; the sums over batches go to :func:`params_from_statistics`,
so memory stays bounded by the batch size.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

DTYPE = tf.float64
# Smallest jitter added to every covariance diagonal, and the growth factor of the ladder tried
# when the factorisation fails; the jitter is relative to max(1, mean variance).
BASE_JITTER = 1e-6
JITTER_GROWTH = 10.0
JITTER_STEPS = 8
# Floor on component weights and membership sums, so log and division stay finite.
_TINY = 1e-30


def gmm_params(z: tf.Tensor, gamma: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mixture weights, means and covariances of one batch from its memberships.

    Parameters
    ----------
    z : tensor (N, D)
        Points.
    gamma : tensor (N, K)
        Soft memberships (rows sum to 1).

    Returns
    -------
    phi (K,), mu (K, D), cov (K, D, D), all float64.

    Examples
    --------
    >>> z = tf.constant([[0.], [2.]]); g = tf.constant([[1.], [1.]])
    >>> [t.numpy().ravel().tolist() for t in gmm_params(z, g)]
    [[1.0], [1.0], [1.0]]
    """
    z = tf.cast(z, DTYPE)
    gamma = tf.cast(gamma, DTYPE)
    n = tf.cast(tf.shape(z)[0], DTYPE)
    sum_gamma = tf.reduce_sum(gamma, axis=0)  # (K,)
    denom = tf.maximum(sum_gamma, _TINY)
    phi = sum_gamma / n
    mu = tf.einsum("nk,nd->kd", gamma, z) / denom[:, None]
    diff = z[:, None, :] - mu[None, :, :]  # (N, K, D)
    cov = tf.einsum("nk,nkd,nke->kde", gamma, diff, diff) / denom[:, None, None]
    return phi, mu, cov


def sufficient_statistics(z, gamma, shift) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(Σγ, Σγ(z−shift), Σγ(z−shift)(z−shift)ᵀ)`` of one batch, float64.

    Subtracting a ``shift`` close to the data's mean (e.g. the first batch's mean) keeps the
    one-pass covariance formula free of cancellation.
    """
    z = tf.cast(z, DTYPE) - tf.cast(shift, DTYPE)
    gamma = tf.cast(gamma, DTYPE)
    return (
        tf.reduce_sum(gamma, axis=0),
        tf.einsum("nk,nd->kd", gamma, z),
        tf.einsum("nk,nd,ne->kde", gamma, z, z),
    )


def params_from_statistics(sum_gamma, sum_gamma_z, sum_gamma_zz, n_samples: int, shift) -> dict[str, np.ndarray]:
    """Mixture parameters from statistics summed over batches (see :func:`sufficient_statistics`).

    Returns
    -------
    dict
        ``phi`` (K,), ``mu`` (K, D), ``cov`` (K, D, D) — the covariance *including* the jitter
        that made it factorisable — and ``cholesky`` (K, D, D), its lower Cholesky factor; all
        float64 numpy arrays.
    """
    sum_gamma = np.asarray(sum_gamma, dtype=np.float64)
    denom = np.maximum(sum_gamma, _TINY)
    phi = sum_gamma / float(n_samples)
    mean_shifted = np.asarray(sum_gamma_z, dtype=np.float64) / denom[:, None]
    second = np.asarray(sum_gamma_zz, dtype=np.float64) / denom[:, None, None]
    cov = second - np.einsum("kd,ke->kde", mean_shifted, mean_shifted)
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))  # exact symmetry
    mu = mean_shifted + np.asarray(shift, dtype=np.float64)[None, :]
    chol, jitter = cholesky_with_jitter(tf.constant(cov, DTYPE))
    dim = cov.shape[-1]
    cov = cov + np.asarray(jitter)[:, None, None] * np.eye(dim)
    return {"phi": phi, "mu": mu, "cov": cov, "cholesky": np.asarray(chol)}


def cholesky_with_jitter(cov: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Lower Cholesky factors of ``cov + jitter_k·I`` with the smallest jitter that works.

    Jitters tried per component: ``BASE_JITTER · JITTER_GROWTH**j · max(1, mean variance)`` for
    ``j = 0 … JITTER_STEPS−1``. The choice is made without gradients; the factorisation that is
    returned is differentiable. A covariance with NaN entries gives a NaN factor (the caller
    reports divergence).

    Returns
    -------
    chol (K, D, D), jitter (K,)

    Examples
    --------
    >>> chol, jitter = cholesky_with_jitter(tf.constant([[[1., 2.], [2., 1.]]], tf.float64))
    >>> bool(np.isfinite(chol.numpy()).all()), float(jitter[0]) > 1.0
    (True, True)
    """
    cov = tf.cast(cov, DTYPE)
    dim = tf.shape(cov)[-1]
    eye = tf.eye(dim, dtype=DTYPE)
    fixed = tf.stop_gradient(cov)
    scale = tf.maximum(tf.reduce_mean(tf.linalg.diag_part(fixed), axis=-1), 1.0)  # (K,)
    ladder = BASE_JITTER * tf.pow(tf.constant(JITTER_GROWTH, DTYPE), tf.range(JITTER_STEPS, dtype=DTYPE))
    jitters = ladder[:, None] * scale[None, :]  # (J, K)
    # On CPU a failed factorisation returns NaN instead of raising; test every rung at once. For a
    # PSD covariance plus jitter j every pivot L_dd² is at least j, so a smaller pivot (e.g. 0)
    # means the matrix was not positive semi-definite enough and the rung is rejected.
    trial = tf.linalg.cholesky(fixed[None] + jitters[:, :, None, None] * eye)  # (J, K, D, D)
    pivots = tf.square(tf.linalg.diag_part(trial))  # (J, K, D)
    ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(trial), axis=[-2, -1]),
                        tf.reduce_all(pivots >= 0.5 * jitters[:, :, None], axis=-1))  # (J, K)
    first_ok = tf.argmax(tf.cast(ok, tf.int32), axis=0)  # first True, or 0 when none
    jitter = tf.stop_gradient(tf.gather(tf.transpose(jitters), first_ok, batch_dims=1))  # (K,)
    chol = tf.linalg.cholesky(cov + jitter[:, None, None] * eye)
    return chol, jitter


def sample_energy(z, phi, mu, chol) -> tf.Tensor:
    """Per-point energy ``E(z) = −log Σ_k phi_k N(z | mu_k, L_k L_kᵀ)``, float64 (N,).

    Examples
    --------
    >>> e = sample_energy(tf.zeros((1, 1)), tf.ones(1, tf.float64), tf.zeros((1, 1), tf.float64),
    ...                   tf.ones((1, 1, 1), tf.float64))
    >>> round(float(e[0]), 6) == round(0.5 * math.log(2 * math.pi), 6)
    True
    """
    z = tf.cast(z, DTYPE)
    phi = tf.cast(phi, DTYPE)
    mu = tf.cast(mu, DTYPE)
    chol = tf.cast(chol, DTYPE)
    dim = tf.cast(tf.shape(z)[-1], DTYPE)
    diff = tf.transpose(z[:, None, :] - mu[None, :, :], [1, 2, 0])  # (K, D, N)
    solved = tf.linalg.triangular_solve(chol, diff, lower=True)  # L⁻¹(z − mu): (K, D, N)
    mahalanobis = tf.reduce_sum(tf.square(solved), axis=1)  # (K, N)
    log_det_half = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)  # (K,) = ½ log|cov|
    log_prob = -0.5 * mahalanobis - log_det_half[:, None] - 0.5 * dim * math.log(2.0 * math.pi)
    log_weighted = tf.math.log(tf.maximum(phi, _TINY))[:, None] + log_prob
    return -tf.reduce_logsumexp(log_weighted, axis=0)


def whitened_params(phi, mu, chol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float32 ``(L⁻¹, mu, log phi − ½ log|cov| − ½ D log 2π)`` for :func:`sample_energy_whitened`.

    Computed in float64 from the stored parameters, once per scoring call (K × D × D numbers).

    Examples
    --------
    >>> w, m, c = whitened_params(np.ones(1), np.zeros((1, 2)), 2 * np.eye(2)[None])
    >>> w[0].tolist(), round(float(c[0]), 4)
    ([[0.5, 0.0], [0.0, 0.5]], -3.2242)
    """
    phi, mu, chol = (np.asarray(a, dtype=np.float64) for a in (phi, mu, chol))
    dim = mu.shape[-1]
    log_det_half = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    offset = np.log(np.maximum(phi, _TINY)) - log_det_half - 0.5 * dim * math.log(2.0 * math.pi)
    whiten = np.linalg.inv(chol)
    return whiten.astype(np.float32), mu.astype(np.float32), offset.astype(np.float32)


def sample_energy_whitened(z, whiten, mu, offset) -> tf.Tensor:
    """:func:`sample_energy` in float32 from :func:`whitened_params`: ``−logsumexp_k(offset_k − ½‖L_k⁻¹(z − mu_k)‖²)``.

    The same energy as :func:`sample_energy` to about 1e-6 relative, with matrix products instead of
    triangular solves, so the whole scoring pass compiles into one fused float32 program.
    """
    z = tf.cast(z, tf.float32)
    diff = z[None, :, :] - mu[:, None, :]  # (K, N, D)
    solved = tf.einsum("kij,knj->kni", whiten, diff)
    mahalanobis = tf.reduce_sum(tf.square(solved), axis=-1)  # (K, N)
    return -tf.reduce_logsumexp(offset[:, None] - 0.5 * mahalanobis, axis=0)


def cov_diag_penalty(cov, jitter=None) -> tf.Tensor:
    """``Σ_k Σ_d 1 / (cov_k,dd + jitter_k)``: keeps the mixture from collapsing onto a point.

    ``jitter`` (K,) is the diagonal jitter from :func:`cholesky_with_jitter`, so the penalty is that
    of the covariance the energy uses and stays finite for a feature that is constant in a batch.
    """
    diag = tf.linalg.diag_part(tf.cast(cov, DTYPE))
    if jitter is not None:
        diag = diag + tf.cast(jitter, DTYPE)[:, None]
    return tf.reduce_sum(1.0 / diag)
