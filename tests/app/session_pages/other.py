import streamlit as st

st.title("Other")
