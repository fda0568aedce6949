//! Colours that mean the same thing in every figure of a report: one per
//! layer (viridis over the model's depth, so neighbouring layers look
//! alike), one per intervention, one per corpus.

/// Viridis at nine stops (matplotlib's), interpolated linearly.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Viridis at t ∈ [0, 1] as `#rrggbb`; the yellow end is cut at 0.9 so
/// lines stay visible on white.
pub fn viridis(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 0.9;
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// The colour of `layer` among layers `0..=max_layer`.
pub fn layer(layer: usize, max_layer: usize) -> String {
    viridis(layer as f64 / max_layer.max(1) as f64)
}

/// The colour of a positional intervention.
pub fn intervention(name: &str) -> &'static str {
    match name {
        "none" => "#222222",
        "zero" => "#d62728",
        "shuffle" => "#1f77b4",
        _ => "#9467bd",
    }
}

/// Categorical colours for corpora, SAEs and ranks, by index.
pub const CATEGORICAL: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// The `i`-th categorical colour (cycling).
pub fn categorical(i: usize) -> &'static str {
    CATEGORICAL[i % CATEGORICAL.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_layers_ordered() {
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(f64::NAN), "#440154");
        // Distinct colours for distinct layers; the same layer always the same.
        let c: Vec<String> = (0..12).map(|l| layer(l, 11)).collect();
        for i in 1..c.len() {
            assert_ne!(c[i - 1], c[i]);
        }
        assert_eq!(layer(5, 11), c[5]);
    }
}
