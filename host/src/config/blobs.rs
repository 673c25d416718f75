//! `[blobs]`: the bounds on what clients upload (`PUT /blobs`).

use super::ConfigError;
use serde::{Deserialize, Serialize};
use wasmnode_runtime::blobs::BlobLimits;

/// Uploads, in MiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsSection {
    /// Largest upload.
    pub max_mb: u64,
    /// Most all blobs together may take; uploads past it are refused (507)
    /// until blobs unused for `scheduler.retention_max_age_hours` are swept.
    pub max_total_mb: u64,
    /// Most one archive may unpack to.
    pub max_unpacked_mb: u64,
    /// Most entries one archive may hold.
    pub max_entries: u64,
}

impl Default for BlobsSection {
    fn default() -> Self {
        let d = BlobLimits::default();
        Self {
            max_mb: d.max_bytes >> 20,
            max_total_mb: d.max_total_bytes >> 20,
            max_unpacked_mb: d.max_unpacked_bytes >> 20,
            max_entries: d.max_entries,
        }
    }
}

impl BlobsSection {
    /// The limits the blob store enforces.
    pub fn limits(&self) -> BlobLimits {
        BlobLimits {
            max_bytes: self.max_mb << 20,
            max_total_bytes: self.max_total_mb << 20,
            max_unpacked_bytes: self.max_unpacked_mb << 20,
            max_entries: self.max_entries,
        }
    }

    /// Every bound is positive, and one upload fits in the total.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if [
            self.max_mb,
            self.max_total_mb,
            self.max_unpacked_mb,
            self.max_entries,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "every [blobs] bound must be positive".into(),
            ));
        }
        if self.max_mb > self.max_total_mb {
            return Err(ConfigError::Invalid(format!(
                "blobs.max_mb ({}) must be at most blobs.max_total_mb ({})",
                self.max_mb, self.max_total_mb
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_bounds_are_named() {
        assert!(BlobsSection::default().validate().is_ok());
        let zero = BlobsSection {
            max_entries: 0,
            ..BlobsSection::default()
        };
        assert!(zero.validate().is_err());
        let upside_down = BlobsSection {
            max_mb: 10,
            max_total_mb: 5,
            ..BlobsSection::default()
        };
        assert!(
            upside_down
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_total_mb")
        );
        assert_eq!(BlobsSection::default().limits(), BlobLimits::default());
    }
}
