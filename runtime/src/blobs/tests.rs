use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

fn store(limits: BlobLimits) -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("blobs"), limits).unwrap();
    (dir, store)
}

fn body(bytes: Vec<u8>) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures::stream::iter(
        bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

/// A tar of `files` (path, contents).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o600);
        builder
            .append_data(&mut header, path, text.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// A tar holding one entry of `kind` named `name` (written raw, so names
/// the builder would refuse get through).
fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish(mut entries: Vec<u8>) -> Vec<u8> {
    entries.extend_from_slice(&[0; 1024]);
    entries
}

#[tokio::test]
async fn an_archive_is_stored_once_under_its_hash_and_unpacked_readable() {
    let (_dir, store) = store(BlobLimits::default());
    let tar = tar_of(&[("src/main.py", "print(1)\n"), ("README", "hi")]);
    let first = store.put(body(tar.clone())).await.unwrap();
    assert_eq!(first.blob, format!("blob:{}", blake3::hash(&tar).to_hex()));
    assert!(first.created);
    assert_eq!(first.size, tar.len() as u64);
    assert_eq!(
        first.archive,
        Some(Unpacked {
            files: 2,
            bytes: 11
        })
    );
    let again = store.put(body(tar)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.archive, first.archive);

    let id = BlobId::parse(&first.blob).unwrap();
    let tree = store.mount_dir(&id).unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("src/main.py")).unwrap(),
        "print(1)\n"
    );
    let mode = std::fs::metadata(tree.join("README"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "0600 in the archive is made readable");
}

#[tokio::test]
async fn a_gzipped_archive_unpacks_too() {
    let (_dir, store) = store(BlobLimits::default());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_of(&[("a.txt", "alpha")])).unwrap();
    let stored = store.put(body(gz.finish().unwrap())).await.unwrap();
    assert_eq!(stored.archive, Some(Unpacked { files: 1, bytes: 5 }));
    let tree = store
        .mount_dir(&BlobId::parse(&stored.blob).unwrap())
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("a.txt")).unwrap(),
        "alpha"
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_and_leaves_nothing() {
    let (_dir, store) = store(BlobLimits {
        max_bytes: 4000,
        ..BlobLimits::default()
    });
    let err = store.put(body(vec![7; 4001])).await.unwrap_err();
    assert!(matches!(err, BlobError::TooLarge { limit: 4000 }), "{err}");
    assert!(store.put(body(vec![7; 4000])).await.is_ok());
    for sub in ["tmp", "tree"] {
        assert_eq!(
            std::fs::read_dir(store.root.join(sub)).unwrap().count(),
            0,
            "{sub}"
        );
    }
}

#[tokio::test]
async fn a_full_store_refuses_new_bytes_but_not_known_ones() {
    let (_dir, store) = store(BlobLimits {
        max_total_bytes: 5000,
        ..BlobLimits::default()
    });
    store.put(body(vec![1; 3000])).await.unwrap();
    let err = store.put(body(vec![2; 3000])).await.unwrap_err();
    assert!(matches!(err, BlobError::StoreFull { .. }), "{err}");
    assert!(!store.put(body(vec![1; 3000])).await.unwrap().created);
}

#[tokio::test]
async fn entries_that_escape_the_tree_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let cases = [
        finish(raw_entry("../evil", tar::EntryType::Regular, None, b"x")),
        finish(
            [
                raw_entry("link", tar::EntryType::Symlink, Some(&target), b""),
                raw_entry("link/evil", tar::EntryType::Regular, None, b"x"),
            ]
            .concat(),
        ),
        finish(raw_entry(
            "hard",
            tar::EntryType::Link,
            Some("/etc/passwd"),
            b"",
        )),
        finish(raw_entry("dev", tar::EntryType::Char, None, b"")),
    ];
    let (_dir, store) = store(BlobLimits::default());
    for (n, tar) in cases.into_iter().enumerate() {
        let err = store.put(body(tar)).await.unwrap_err();
        assert!(
            matches!(err, BlobError::InvalidArchive(_)),
            "case {n}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(store.root.join("data")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn archives_are_capped_in_entries_and_unpacked_bytes() {
    let (_dir, store) = store(BlobLimits {
        max_entries: 2,
        max_unpacked_bytes: 10,
        ..BlobLimits::default()
    });
    let many = tar_of(&[("a", "1"), ("b", "2"), ("c", "3")]);
    assert!(
        store
            .put(body(many))
            .await
            .unwrap_err()
            .to_string()
            .contains("max_entries")
    );
    let big = tar_of(&[("a", "0123456789A")]);
    assert!(
        store
            .put(body(big))
            .await
            .unwrap_err()
            .to_string()
            .contains("max_unpacked_mb")
    );
}

#[tokio::test]
async fn other_bytes_run_as_components_but_do_not_mount() {
    let (_dir, store) = store(BlobLimits::default());
    let stored = store
        .put(body(b"\0asm\x0d\0\x01\0".to_vec()))
        .await
        .unwrap();
    assert_eq!(stored.archive, None);
    let id = BlobId::parse(&stored.blob).unwrap();
    assert!(matches!(
        store.mount_dir(&id),
        Err(BlobError::NotAnArchive(_))
    ));
    assert_eq!(
        std::fs::read(store.file(&id).unwrap()).unwrap(),
        b"\0asm\x0d\0\x01\0"
    );
    let unknown = BlobId::parse(&"0".repeat(64)).unwrap();
    assert!(matches!(store.file(&unknown), Err(BlobError::NotFound(_))));
}

#[tokio::test]
async fn a_lost_tree_is_unpacked_again_on_use() {
    let (_dir, store) = store(BlobLimits::default());
    let stored = store.put(body(tar_of(&[("f", "again")]))).await.unwrap();
    let id = BlobId::parse(&stored.blob).unwrap();
    unpack::remove_tree(&store.tree(&id)).unwrap();
    let tree = store.mount_dir(&id).unwrap();
    assert_eq!(std::fs::read_to_string(tree.join("f")).unwrap(), "again");
}

#[tokio::test]
async fn sweep_removes_only_blobs_idle_past_the_age() {
    let (_dir, store) = store(BlobLimits::default());
    let old = store.put(body(tar_of(&[("f", "old")]))).await.unwrap();
    let new = store.put(body(b"new".to_vec())).await.unwrap();
    let old = BlobId::parse(&old.blob).unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .append(true)
        .open(store.data(&old))
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    assert_eq!(store.sweep(Duration::from_secs(60)).unwrap(), 1);
    assert!(store.size(&old).is_none() && !store.tree(&old).exists());
    assert!(store.size(&BlobId::parse(&new.blob).unwrap()).is_some());
}

#[test]
fn references_are_blob_and_64_hex_digits() {
    let hex = "AB".repeat(32);
    assert_eq!(
        BlobId::parse(&format!("blob:{hex}")).unwrap().hex(),
        "ab".repeat(32)
    );
    for bad in [
        "blob:",
        "blob:abc",
        &format!("blob:{}", "g".repeat(64)),
        "/etc/passwd",
    ] {
        assert!(
            matches!(BlobId::parse(bad), Err(BlobError::BadReference(_))),
            "{bad}"
        );
    }
}

#[test]
fn reopening_removes_half_written_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    BlobStore::open(&root, BlobLimits::default()).unwrap();
    std::fs::write(root.join("tmp/partial"), b"half").unwrap();
    BlobStore::open(&root, BlobLimits::default()).unwrap();
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}
