//! A slim copy of `results.json` for committing or mailing: every table,
//! matching ratio, training curve, evaluation and per-position curve is kept;
//! the per-feature arrays (means, stds, densities, deciles), the UMAP points
//! and the cosine histograms, which make up nearly all of the file, are
//! dropped, and `missing` says so. A report built from it has every table
//! and the findings; the figures drawn from the dropped arrays are replaced
//! by notes.

use crate::schema::Results;

/// The note `missing` gets in a slim copy.
pub const SLIM_NOTE: &str = "per-feature statistics, UMAP points and cosine histograms \
     (dropped from this slim copy of results.json; the full file has them)";

/// Reads `input` and writes its slim copy to `output`, gzip-compressed.
pub fn slim_copy(
    input: &std::path::Path,
    output: &std::path::Path,
) -> Result<(), crate::ResultsError> {
    crate::write_gz(output, &slim(&crate::read(input)?))
}

/// `r` without its bulky per-feature arrays (module doc).
pub fn slim(r: &Results) -> Results {
    let mut s = r.clone();
    for p in &mut s.positions {
        let st = &mut p.stats;
        st.feature_mean.clear();
        st.feature_std.clear();
        st.feature_density.clear();
        st.deciles.clear();
    }
    for u in &mut s.umap {
        u.points.clear();
    }
    for (_, m) in &mut s.matches {
        m.histograms.clear();
    }
    if !s.missing.iter().any(|m| m == SLIM_NOTE) {
        s.missing.push(SLIM_NOTE.into());
    }
    s
}
