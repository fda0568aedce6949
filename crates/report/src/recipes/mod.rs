//! Figure recipes: the study's figures built from plain result data.

pub mod matching;
