//! A real OCI registry for the tests: Debian's `docker-registry` (the CNCF
//! distribution registry), on 127.0.0.1 with its storage in a temporary
//! directory, so a test can also reach under it and damage a blob.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; stopped when dropped.
pub struct Registry {
    child: Child,
    storage: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts a registry and waits until it answers `/v2/`.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a registry that requires the login `user`/`password` (HTTP
    /// basic auth from an htpasswd file; clients on 127.0.0.1 may use it
    /// without TLS).
    pub async fn start_with_login(user: &str, password: &str) -> Self {
        Self::launch(Some((user, password))).await
    }

    async fn launch(login: Option<(&str, &str)>) -> Self {
        let storage = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let config = storage.path().join("config.yml");
        let auth = match login {
            Some((user, password)) => {
                let hash = bcrypt::hash_with_result(password, 5)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoY);
                let file = storage.path().join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start docker-registry (Debian package docker-registry; `make deps` installs it)",
            );
        let registry = Self {
            child,
            storage,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://{}/v2/", registry.addr);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && (r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED)
            {
                return registry;
            }
            assert!(Instant::now() < deadline, "the registry did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the registry keeps the blob `sha256:HEX`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
