//! Hook points named as in TransformerLens (`blocks.L.hook_resid_pre`,
//! `..._mid`, `..._post`), the one naming used everywhere in saelab.

use crate::error::{LmError, Result};
use std::fmt;
use std::str::FromStr;

/// Where in a block the residual stream is read or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// Input of block L (HF `hidden_states[L]`).
    ResidPre,
    /// After the attention sub-block of block L, before its MLP.
    ResidMid,
    /// Output of block L (equal in value to `resid_pre` of block L+1).
    ResidPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookPoint {
    pub layer: usize,
    pub site: Site,
}

impl HookPoint {
    pub fn new(layer: usize, site: Site) -> Self {
        HookPoint { layer, site }
    }

    /// Order of this point in a forward pass: pre(L) < mid(L) < post(L) < pre(L+1).
    pub fn order(&self) -> usize {
        3 * self.layer
            + match self.site {
                Site::ResidPre => 0,
                Site::ResidMid => 1,
                Site::ResidPost => 2,
            }
    }

    /// Error unless the point exists in a model with `n_layers` blocks.
    pub fn check(&self, n_layers: usize) -> Result<()> {
        if self.layer >= n_layers {
            return Err(LmError::HookOutOfRange {
                hook: self.to_string(),
                n_layers,
            });
        }
        Ok(())
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.site {
            Site::ResidPre => "hook_resid_pre",
            Site::ResidMid => "hook_resid_mid",
            Site::ResidPost => "hook_resid_post",
        };
        write!(f, "blocks.{}.{}", self.layer, s)
    }
}

impl FromStr for HookPoint {
    type Err = LmError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || LmError::BadHook(s.to_string());
        let rest = s.strip_prefix("blocks.").ok_or_else(bad)?;
        let (layer, site) = rest.split_once('.').ok_or_else(bad)?;
        let layer: usize = layer.parse().map_err(|_| bad())?;
        let site = match site {
            "hook_resid_pre" => Site::ResidPre,
            "hook_resid_mid" => Site::ResidMid,
            "hook_resid_post" => Site::ResidPost,
            _ => return Err(bad()),
        };
        Ok(HookPoint { layer, site })
    }
}

impl serde::Serialize for HookPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for HookPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "blocks.0.hook_resid_pre",
            "blocks.11.hook_resid_mid",
            "blocks.8.hook_resid_post",
        ] {
            let h: HookPoint = s.parse().unwrap();
            assert_eq!(h.to_string(), s);
        }
        assert!("blocks.x.hook_resid_pre".parse::<HookPoint>().is_err());
        assert!("blocks.1.hook_attn_out".parse::<HookPoint>().is_err());
        assert!("resid_pre".parse::<HookPoint>().is_err());
    }

    #[test]
    fn order_follows_the_forward_pass() {
        let p = |s: &str| s.parse::<HookPoint>().unwrap().order();
        assert!(p("blocks.0.hook_resid_pre") < p("blocks.0.hook_resid_mid"));
        assert!(p("blocks.0.hook_resid_mid") < p("blocks.0.hook_resid_post"));
        assert!(p("blocks.0.hook_resid_post") < p("blocks.1.hook_resid_pre"));
    }

    #[test]
    fn out_of_range_names_the_hook() {
        let h: HookPoint = "blocks.12.hook_resid_pre".parse().unwrap();
        let e = h.check(12).unwrap_err().to_string();
        assert!(
            e.contains("blocks.12.hook_resid_pre") && e.contains("12 layers"),
            "{e}"
        );
    }
}
