"""Data page: pick a bundled dataset or upload a CSV, preview it, check it, and set column roles."""

import streamlit as st

from engine.datasets import get_dataset, list_datasets
from engine.errors import DataError
from engine.ingest import ROLES
from ui import data as ui_data
from ui.settings import SETTINGS

st.title("Data")
st.caption("Every workflow reads the active dataset chosen here (or a bundled dataset picked on its page).")

bundled_tab, upload_tab = st.tabs(["Bundled datasets", "Upload a CSV"])
with bundled_tab:
    datasets = list_datasets()
    keys = [d.key for d in datasets]
    origin = ui_data.active_origin()
    current_key = origin.split(":", 1)[1] if origin.startswith("bundled:") else ui_data.DEFAULT_DATASET
    key = st.selectbox("Bundled dataset", keys, index=keys.index(current_key),
                       format_func=lambda k: f"{get_dataset(k).title} · {get_dataset(k).kind}", key="bundled_choice")
    info = get_dataset(key)
    st.markdown(f"{info.description}  \n**Source:** {info.source} · **Licence:** {info.licence}")
    if st.button("Use this dataset", key="use_bundled", type="primary", disabled=origin == f"bundled:{key}"):
        ui_data.set_active(ui_data.bundled_table(key), origin=f"bundled:{key}")
        st.rerun()

with upload_tab:
    st.markdown(
        f"A CSV (comma, semicolon, tab or pipe separated; UTF-8 or Latin-1) with a header row. Limits: "
        f"{SETTINGS.max_upload_mb} MB, {SETTINGS.max_rows:,} rows, {SETTINGS.max_columns:,} columns."
    )
    ui_data.csv_uploader()

table = ui_data.active_table()
st.header(f"Active dataset: {table.name}")
frame = table.frame
cols = st.columns(4)
cols[0].metric("Rows", f"{len(frame):,}")
cols[1].metric("Columns", f"{len(frame.columns):,}")
cols[2].metric("Label column", table.label or "—")
cols[3].metric("Time column", table.time or "—")
for warning in table.warnings:
    st.warning(warning, icon=":material/warning:")

st.subheader("Preview")
st.dataframe(frame.head(200), key="preview", height=260)

st.subheader("Columns and roles")
st.caption("Roles decide how each workflow uses a column: numeric **feature**s go into models, the **label** is "
           "ground truth for metrics, the **time** column orders a series, **ignore**d columns are left out.")
summary = table.summary()
# A keyed data_editor keeps its edits while the table keeps its shape, so a fixed key would re-apply one
# dataset's role edits to the next dataset with as many columns. The key follows the dataset instead
# (role changes keep the frame object, so they keep the key).
edited = st.data_editor(
    summary,
    key=f"roles_editor::{id(frame)}",
    hide_index=True,
    disabled=[c for c in summary.columns if c != "role"],
    column_config={"role": st.column_config.SelectboxColumn("role", options=list(ROLES), required=True)},
)
changes = {row.column: row.role for row in edited.itertuples() if table.roles.get(row.column) != row.role}
if changes:
    try:
        ui_data.set_active(table.with_roles(changes), origin=ui_data.active_origin())
    except DataError as exc:
        st.error(f"Role change not applied: {exc}", icon=":material/error:")
    else:
        st.rerun()

report = table.missing_report()
st.subheader("Missing values")
if report.empty:
    st.success("No missing or infinite values.")
else:
    st.dataframe(report.style.format({"share": "{:.1%}"}), hide_index=True, key="missing")
    st.caption("Workflows let you drop or fill (median) rows with missing values in the columns you select.")
