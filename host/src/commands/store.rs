//! `wasmnode store check` and `wasmnode store repair`, for a stopped node.

use super::{Printed, load_config, out};
use crate::cli::NodeArgs;
use crate::store::{self, Repaired};
use std::path::{Path, PathBuf};

fn store_path(config_file: Option<&Path>, args: &NodeArgs) -> anyhow::Result<PathBuf> {
    let config = load_config(config_file, &args.flags())?;
    Ok(config.node.data_dir.join("jobs.redb"))
}

fn sound(repaired: bool) -> &'static str {
    if repaired { "repaired in place" } else { "ok" }
}

/// Verifies every page and prints what the store holds.
pub fn check(config_file: Option<&Path>, args: &NodeArgs) -> anyhow::Result<Printed> {
    let path = store_path(config_file, args)?;
    let (census, repaired) = store::check(&path)?;
    out(&format!(
        "{}: {}, {census}\n",
        path.display(),
        sound(repaired)
    ));
    Ok(Printed { status: 0 })
}

/// Repairs the store and says what it did.
pub fn repair(config_file: Option<&Path>, args: &NodeArgs) -> anyhow::Result<Printed> {
    let path = store_path(config_file, args)?;
    match store::repair(&path)? {
        Repaired::InPlace { census, repaired } => {
            out(&format!(
                "{}: {}, {census}\n",
                path.display(),
                sound(repaired)
            ));
        }
        Repaired::Rebuilt {
            census,
            moved_to,
            lost_requests,
        } => {
            out(&format!(
                "{}: rebuilt from what could be read: {census}\nthe damaged file is kept at {}\n",
                path.display(),
                moved_to.display()
            ));
            if lost_requests > 0 {
                out(&format!(
                    "{lost_requests} unfinished jobs lost their request and are recorded as failed (STORE_DAMAGED)\n"
                ));
            }
        }
    }
    Ok(Printed { status: 0 })
}
