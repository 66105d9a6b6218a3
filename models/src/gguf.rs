//! GGUF reader (todo)
