//! HF (todo)
