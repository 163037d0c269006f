//! Training: optimiser, schedule, augmentation, sampling, the training loop and checkpoints.

pub mod adamw;
