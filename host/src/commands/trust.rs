//! `wasmnode tool keygen|sign|verify`: ed25519 keys, and signatures over a
//! tool's digest and manifest (see `wasmnode_runtime::signing`).

use super::tool::{local_router, resolve};
use super::{Printed, load_config};
use crate::cli::{ToolKeygenArgs, ToolSignArgs, ToolVerifyArgs};
use anyhow::Context;
use std::path::Path;
use wasmnode_runtime::signing::{self, Manifest, TrustList};
use wasmnode_runtime::{Router, wasm::ToolDescription};

/// Writes a new key pair.
pub fn keygen(args: ToolKeygenArgs) -> anyhow::Result<Printed> {
    let (private, public) = signing::key_paths(&args.out);
    let fingerprint = signing::generate(&private, &public)?;
    super::out(&format!(
        "private key: {} (keep it secret)\npublic key:  {} (give it to the nodes that will trust your tools)\nfingerprint: {fingerprint}\n",
        private.display(),
        public.display()
    ));
    Ok(Printed { status: 0 })
}

/// Signs a tool: writes `TOOL.wasm.sig`.
pub async fn sign(config_file: Option<&Path>, args: ToolSignArgs) -> anyhow::Result<Printed> {
    let key = signing::read_signing_key(&args.key)?;
    let config = load_config(config_file, &args.node.flags())?;
    let router = local_router(&config).await?;
    let bytes = read(&args.tool)?;
    let tool = describe(&router, &args.tool).await?;
    let signature = signing::sign(&bytes, manifest(&tool), &key);
    let path = signing::signature_path(&args.tool);
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&signature).expect("signatures serialize"),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    super::out(&format!(
        "signed {} {} ({}) with {}\nwrote {}\n",
        tool.name,
        tool.version,
        signature.statement.digest,
        signature.key,
        path.display()
    ));
    Ok(Printed { status: 0 })
}

/// Checks a tool's signature: exit status 0 and one line when it holds,
/// 1 and the reason when it does not.
pub async fn verify(config_file: Option<&Path>, args: ToolVerifyArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let keys = if args.keys.is_empty() {
        config.policy.trusted_keys.clone()
    } else {
        args.keys.clone()
    };
    anyhow::ensure!(
        !keys.is_empty(),
        "no public keys: give --key PUB.pem, or set policy.trusted_keys"
    );
    let trust = TrustList::load(&keys)?;
    let bytes = read(&args.tool)?;
    let checked = signing::read_signature(&args.tool)
        .and_then(|signature| trust.verify(&args.tool.display().to_string(), &bytes, &signature));
    let statement = match checked {
        Ok(statement) => statement,
        Err(e) => {
            super::err(&format!("verification failed: {e}\n"));
            return Ok(Printed { status: 1 });
        }
    };
    let router = local_router(&config).await?;
    let tool = describe(&router, &args.tool).await?;
    if manifest(&tool) != statement.tool {
        super::err(&format!(
            "verification failed: the tool describes itself as {} {}, the signature is for {} {}\n",
            tool.name, tool.version, statement.tool.name, statement.tool.version
        ));
        return Ok(Printed { status: 1 });
    }
    super::out(&format!(
        "verified: {} {} ({})\n",
        statement.tool.name, statement.tool.version, statement.digest
    ));
    Ok(Printed { status: 0 })
}

/// What a tool says of itself, as a signature records it.
fn manifest(tool: &ToolDescription) -> Manifest {
    Manifest {
        name: tool.name.clone(),
        version: tool.version.clone(),
        writes: tool.writes,
        mounts: tool
            .mounts
            .iter()
            .map(|m| {
                if m.write {
                    format!("{}:rw", m.path)
                } else {
                    m.path.clone()
                }
            })
            .collect(),
    }
}

async fn describe(router: &Router, path: &Path) -> anyhow::Result<ToolDescription> {
    let source = resolve(&router.tools(), &path.display().to_string())?;
    router
        .executors()
        .wasm
        .tool_description(&source)
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", path.display(), f.message))?
        .map(|tool| tool.as_ref().clone())
        .with_context(|| format!("{} is not a wasmnode:tool component", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
