//! `wasmnode tool push|pull`: tools in an OCI registry, as the wasm
//! artifact convention has them (wkg, wash and Wassette use it): a config
//! blob of type `application/vnd.wasm.config.v0+json` and one layer of type
//! `application/vnd.wasm.content.layer.v1+wasm`. A tool's signature, when it
//! has one, rides along as a manifest annotation, so the registry holds one
//! artifact and wasm-aware tools still read it.

use super::Printed;
use crate::cli::{ToolPullArgs, ToolPushArgs};
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::collections::BTreeMap;
use std::path::Path;
use wasmnode_runtime::signing;

/// Media type of the wasm artifact's config blob.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the wasm artifact's one layer.
const LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Manifest annotation holding the tool's signature file, base64.
const SIGNATURE_ANNOTATION: &str = "dev.wasmnode.tool.signature";
/// Manifest annotation holding the tool's file name.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Largest component a pull accepts.
const MAX_COMPONENT_BYTES: i64 = 512 << 20;

/// Pushes a tool component (and its signature, if any).
pub async fn push(args: ToolPushArgs) -> anyhow::Result<Printed> {
    let reference = parse(&args.reference)?;
    let bytes = std::fs::read(&args.tool)
        .with_context(|| format!("cannot read {}", args.tool.display()))?;
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "{} is not a WebAssembly binary",
        args.tool.display()
    );
    let name = args
        .tool
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tool.wasm".into());
    let mut annotations = BTreeMap::from([(TITLE_ANNOTATION.to_string(), name)]);
    let signature = signing::signature_path(&args.tool);
    let signed = signature.is_file();
    if signed {
        let text = std::fs::read(&signature)
            .with_context(|| format!("cannot read {}", signature.display()))?;
        annotations.insert(SIGNATURE_ANNOTATION.into(), BASE64.encode(text));
    }
    let digest = signing::digest(&bytes);
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [digest],
    });
    let config = Config::new(
        serde_json::to_vec(&config).expect("JSON values serialize"),
        CONFIG_MEDIA_TYPE.into(),
        None,
    );
    let layers = [ImageLayer::new(bytes, LAYER_MEDIA_TYPE.into(), None)];
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let client = client(&reference, args.plain_http);
    client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .with_context(|| format!("cannot push to {reference}"))?;
    let (_, manifest_digest) = client
        .pull_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .with_context(|| format!("pushed, but cannot read back {reference}"))?;
    super::out(&format!(
        "pushed {} ({}){}\npinned: {}\n",
        args.tool.display(),
        digest,
        if signed { " with its signature" } else { "" },
        pinned(&reference, &manifest_digest)
    ));
    Ok(Printed { status: 0 })
}

/// Pulls a tool, checking every byte against the digests the manifest names.
pub async fn pull(args: ToolPullArgs) -> anyhow::Result<Printed> {
    let reference = parse(&args.reference)?;
    let client = client(&reference, args.plain_http);
    let (manifest, manifest_digest) = client
        .pull_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .with_context(|| format!("cannot pull {reference}"))?;
    if let Some(wanted) = reference.digest()
        && wanted != manifest_digest
    {
        bail!("the registry answered {reference} with a manifest of digest {manifest_digest}");
    }
    let OciManifest::Image(manifest) = manifest else {
        bail!("{reference} is an image index, not a wasm artifact");
    };
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        bail!(
            "{reference} is not a wasm artifact (its config is {})",
            manifest.config.media_type
        );
    }
    let [layer] = manifest.layers.as_slice() else {
        bail!(
            "{reference} has {} layers; a wasm artifact has one",
            manifest.layers.len()
        );
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        bail!(
            "{reference}'s layer is {}, not a wasm component",
            layer.media_type
        );
    }
    if !(0..=MAX_COMPONENT_BYTES).contains(&layer.size) {
        bail!(
            "{reference}'s component is {} bytes, over the limit of {MAX_COMPONENT_BYTES}",
            layer.size
        );
    }
    let mut sink = Capped {
        bytes: Vec::new(),
        cap: usize::try_from(layer.size).unwrap_or(0),
    };
    client
        .pull_blob(&reference, layer, &mut sink)
        .await
        .with_context(|| format!("cannot fetch the component of {reference}"))?;
    let bytes = sink.bytes;
    // The client checks the digest; so does this, whatever the client does.
    let digest = signing::digest(&bytes);
    if digest != layer.digest {
        bail!(
            "the component of {reference} does not match its digest: got {digest}, the manifest says {}",
            layer.digest
        );
    }
    let annotations = manifest.annotations.unwrap_or_default();
    let name = annotations
        .get(TITLE_ANNOTATION)
        .map(|t| file_name(t))
        .transpose()?
        .unwrap_or_else(|| format!("{}.wasm", last_segment(reference.repository())));
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let path = args.dir.join(&name);
    write(&path, &bytes)?;
    let signed = match annotations.get(SIGNATURE_ANNOTATION) {
        Some(encoded) => {
            let text = BASE64
                .decode(encoded)
                .context("the signature annotation is not base64")?;
            write(&signing::signature_path(&path), &text)?;
            true
        }
        None => {
            // A signature left from an earlier pull would now sign other bytes.
            let _ = std::fs::remove_file(signing::signature_path(&path));
            false
        }
    };
    super::out(&format!(
        "pulled {} ({digest}){}\npinned: {}\n",
        path.display(),
        if signed {
            " with its signature"
        } else {
            ", unsigned"
        },
        pinned(&reference, &manifest_digest)
    ));
    Ok(Printed { status: 0 })
}

/// Keeps at most `cap` bytes; a registry sending more than the size its
/// manifest declared gets an error, not the node's memory.
struct Capped {
    bytes: Vec<u8>,
    cap: usize,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.cap {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {} bytes the manifest declares",
                self.cap
            ))));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn parse(reference: &str) -> anyhow::Result<Reference> {
    reference.parse().with_context(|| {
        format!("`{reference}` is not a registry reference (REGISTRY/REPOSITORY:TAG)")
    })
}

/// A client speaking plain HTTP to loopback registries (and to others only
/// when asked), HTTPS to the rest.
fn client(reference: &Reference, plain_http: bool) -> Client {
    let registry = reference.resolve_registry().to_string();
    let protocol = if plain_http || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    })
}

/// Whether `registry` (`HOST[:PORT]`) is on a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `REGISTRY/REPOSITORY@DIGEST`.
fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

fn last_segment(repository: &str) -> &str {
    repository.rsplit('/').next().unwrap_or(repository)
}

/// A file name from the registry: one plain `*.wasm` component, nothing
/// that climbs out of the target directory.
fn file_name(title: &str) -> anyhow::Result<String> {
    let plain = !title.is_empty()
        && title.ends_with(".wasm")
        && !title.starts_with('.')
        && title
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain {
        bail!("the artifact names its file `{title}`, which is not a plain NAME.wasm");
    }
    Ok(title.to_string())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_may_name_only_a_plain_wasm_file() {
        assert_eq!(file_name("word_count.wasm").unwrap(), "word_count.wasm");
        for bad in [
            "../x.wasm",
            "/etc/x.wasm",
            "x.sh",
            ".hidden.wasm",
            "a/b.wasm",
            "",
        ] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_blob_longer_than_its_declared_size_is_refused() {
        use tokio::io::AsyncWriteExt;
        let mut sink = Capped {
            bytes: Vec::new(),
            cap: 4,
        };
        sink.write_all(b"wasm").await.unwrap();
        assert!(sink.write_all(b"!").await.is_err());
        assert_eq!(sink.bytes, b"wasm");
    }

    #[test]
    fn only_loopback_registries_speak_plain_http_unasked() {
        for local in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["ghcr.io", "10.0.0.1:5000", "registry.local:443"] {
            assert!(!is_loopback(remote), "{remote}");
        }
        assert_eq!(
            pinned(&parse("127.0.0.1:5000/tools/wc:1").unwrap(), "sha256:ab"),
            "127.0.0.1:5000/tools/wc@sha256:ab"
        );
    }
}
