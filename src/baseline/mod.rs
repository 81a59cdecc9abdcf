//! TODO-free placeholder: filled by the pipeline work.
