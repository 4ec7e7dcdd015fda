import streamlit as st

st.number_input("Epochs", 1, 100, 10, key="demo:epochs")
st.select_slider("Batch size", [32, 64, 128], value=128, key="demo:batch")
st.multiselect("Features", ["a", "b", "c"], default=["a"], key="demo:features")
st.checkbox("Normal rows only", key="demo:normal_only")
st.button("Train", key="demo:train")
