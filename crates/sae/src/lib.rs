//! Sparse autoencoders: architectures, training, file formats.
