//! Prototype generation (placeholder).
