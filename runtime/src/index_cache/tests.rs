use super::*;
use serde_json::json;

const GUEST: [u8; 32] = [7; 32];

fn guest() -> blake3::Hash {
    blake3::Hash::from_bytes(GUEST)
}

fn cache(dir: &Path, max_bytes: u64) -> IndexCache {
    IndexCache::open(IndexCacheSettings {
        dir: dir.to_path_buf(),
        max_bytes,
        min_corpus_bytes: 10,
    })
    .unwrap()
}

fn task(corpus: &str) -> TaskSpec {
    TaskSpec::new(
        "j",
        "retrieval",
        json!({"query": "q", "documents_json": corpus}),
    )
}

/// What the guest does on a miss: writes `bytes` where the node mounted.
fn guest_writes(task: &TaskSpec, bytes: usize) {
    let mount = task.mounts.last().unwrap();
    assert_eq!(mount.guest_path, GUEST_DIR);
    assert!(mount.writable);
    assert_eq!(task.payload[INPUT]["write"], format!("{GUEST_DIR}/{FILE}"));
    let MountSource::NodeCache(dir) = &mount.source else {
        panic!("{mount:?}")
    };
    std::fs::write(dir.join(FILE), vec![b'x'; bytes]).unwrap();
}

/// Runs a task through the cache as the router does; true on a hit.
fn run(cache: &IndexCache, corpus: &str, bytes: usize) -> bool {
    let mut t = task(corpus);
    match cache.prepare(&mut t, &guest(), None).unwrap() {
        Lease::Hit(pin) => {
            drop(pin);
            true
        }
        miss => {
            guest_writes(&t, bytes);
            miss.finish(true);
            false
        }
    }
}

#[test]
fn the_key_changes_with_any_document_the_input_it_came_in_and_the_guest() {
    let docs = json!([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]);
    let base = Key::new(&guest(), "documents_json", &docs);
    assert_eq!(base, Key::new(&guest(), "documents_json", &docs.clone()));
    let mut edited = docs.clone();
    edited[1]["text"] = json!("two!");
    assert_ne!(base, Key::new(&guest(), "documents_json", &edited));
    let mut retagged = docs.clone();
    retagged[0]["metadata"] = json!({"tenant": "x"});
    assert_ne!(base, Key::new(&guest(), "documents_json", &retagged));
    assert_ne!(base, Key::new(&guest(), "documents", &docs));
    assert_eq!(
        base,
        Key::new(&guest(), "documents_json", &json!(docs.to_string())),
        "the guest is handed the same bytes either way"
    );
    let other_guest = blake3::hash(b"a retrieval guest with another analyser");
    assert_ne!(base, Key::new(&other_guest, "documents_json", &docs));
}

/// The directory the node mounted for `task`.
fn mounted(task: &TaskSpec) -> &Path {
    let mount = task.mounts.last().unwrap();
    let MountSource::NodeCache(dir) = &mount.source else {
        panic!("{mount:?}")
    };
    dir
}

#[test]
fn a_miss_hands_the_corpus_over_as_a_file_and_the_next_task_reads_the_index_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1 << 20);
    let corpus = r#"[{"id": "a", "text": "some \"quoted\" words to rank"}]"#;
    let mut first = task(corpus);
    let lease = cache.prepare(&mut first, &guest(), None).unwrap();
    assert!(matches!(lease, Lease::Miss(_)));
    assert_eq!(
        first.payload,
        json!({"query": "q", "index_cache": {
            "write": format!("{GUEST_DIR}/{FILE}"),
            "max_bytes": (1 << 20) - corpus.len(),
            "corpus": format!("{GUEST_DIR}/{CORPUS}"),
            "from": "documents_json",
        }})
    );
    assert_eq!(
        std::fs::read_to_string(mounted(&first).join(CORPUS)).unwrap(),
        corpus,
        "the string's own bytes, not its JSON escape"
    );
    guest_writes(&first, 100);
    lease.finish(true);
    assert_eq!(cache.stats().stored, 1);

    let mut second = task(corpus);
    let lease = cache.prepare(&mut second, &guest(), None).unwrap();
    assert!(matches!(lease, Lease::Hit(_)));
    assert_eq!(
        second.payload,
        json!({"query": "q", "index_cache": {
            "read": format!("{GUEST_DIR}/{FILE}"),
            "corpus": format!("{GUEST_DIR}/{CORPUS}"),
        }})
    );
    assert!(
        !second.mounts[0].writable,
        "a cached index is mounted read-only"
    );
    let entry = mounted(&second);
    assert_eq!(std::fs::read(entry.join(FILE)).unwrap().len(), 100);
    assert_eq!(std::fs::read_to_string(entry.join(CORPUS)).unwrap(), corpus);
    lease.finish(true);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert_eq!(stats.bytes, 100 + corpus.len() as u64, "index and corpus");
}

#[test]
fn a_list_of_documents_is_handed_over_as_its_json_and_a_corpus_over_the_budget_stays_inline() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1000);
    let docs = json!([{"id": "a", "text": "listed"}, "plain"]);
    let mut listed = TaskSpec::new("j", "retrieval", json!({"query": "q", "documents": docs}));
    let _lease = cache.prepare(&mut listed, &guest(), None).unwrap();
    assert_eq!(listed.payload[INPUT]["from"], "documents");
    assert_eq!(
        std::fs::read(mounted(&listed).join(CORPUS)).unwrap(),
        serde_json::to_vec(&docs).unwrap()
    );
    let large = "x".repeat(1000);
    let mut t = task(&large);
    assert!(cache.prepare(&mut t, &guest(), None).is_none());
    assert_eq!(t.payload["documents_json"], large.as_str());
    assert!(t.mounts.is_empty());
}

#[test]
fn a_failed_task_or_an_oversized_index_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1000);
    let mut t = task("a corpus that failed");
    let lease = cache.prepare(&mut t, &guest(), None).unwrap();
    guest_writes(&t, 10);
    lease.finish(false);
    assert!(!run(&cache, "a corpus that failed", 10), "still a miss");
    let large = "a corpus whose index is too large";
    assert!(!run(&cache, large, 1001 - large.len()));
    assert!(!run(&cache, large, 10), "not kept");
    assert_eq!(cache.stats().entries, 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join(INCOMING))
            .unwrap()
            .count(),
        0,
        "incoming directories are removed"
    );
}

#[test]
fn the_cache_stays_within_its_budget_evicting_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 250);
    for corpus in ["corpus one", "corpus two"] {
        assert!(!run(&cache, corpus, 100));
    }
    assert!(run(&cache, "corpus one", 100), "one is now the most recent");
    assert!(!run(&cache, "corpus three", 100));
    let stats = cache.stats();
    assert_eq!(
        (stats.entries, stats.bytes, stats.evicted),
        (2, 110 + 112, 1)
    );
    assert!(run(&cache, "corpus one", 100));
    assert!(run(&cache, "corpus three", 100));
    assert!(!run(&cache, "corpus two", 100), "two was evicted");
    let on_disk = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(on_disk, 2 + 1, "two entries and the incoming directory");
}

#[test]
fn an_index_a_task_is_reading_is_not_evicted_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 150);
    assert!(!run(&cache, "corpus read", 100));
    let mut reader = task("corpus read");
    let pin = cache.prepare(&mut reader, &guest(), None).unwrap();
    assert!(!run(&cache, "corpus new", 100));
    let MountSource::NodeCache(entry) = &reader.mounts[0].source else {
        panic!()
    };
    assert!(entry.join(FILE).exists(), "the entry being read survives");
    let stats = cache.stats();
    assert_eq!((stats.bytes, stats.evicted), (111, 1), "the other one went");
    pin.finish(true);
    assert!(run(&cache, "corpus read", 100));
}

#[test]
fn reopening_keeps_finished_indexes_and_drops_half_written_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = cache(dir.path(), 1000);
        assert!(!run(&cache, "corpus kept", 100));
        let mut t = task("corpus crashed");
        let _lease = cache.prepare(&mut t, &guest(), None).unwrap();
        guest_writes(&t, 100);
        let old = dir
            .path()
            .join(Key::new(&guest(), "documents", &json!("x")).dir_name());
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join(FILE), "an index without its corpus").unwrap();
        std::fs::create_dir(dir.path().join("not-a-key")).unwrap();
        std::mem::forget(_lease);
    }
    let cache = cache(dir.path(), 1000);
    assert_eq!(cache.stats().entries, 1);
    assert!(run(&cache, "corpus kept", 100));
    assert!(!dir.path().join("not-a-key").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1 + 1,
        "the entry and incoming"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join(INCOMING))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn small_corpora_directories_and_a_task_setting_the_input_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1000);
    assert!(cache.prepare(&mut task("tiny"), &guest(), None).is_none());
    let mut both = task("documents twice given");
    both.payload["documents"] = json!("and again");
    assert!(cache.prepare(&mut both, &guest(), None).is_none());
    let mut directory = task("documents and a directory");
    directory.payload["directory"] = json!("/data");
    assert!(cache.prepare(&mut directory, &guest(), None).is_none());
    let mut forged = task("a task that names its own index");
    forged.payload[INPUT] = json!({"read": "/data/index.bm25"});
    assert_eq!(
        refuse_reserved(&forged).unwrap_err().kind,
        crate::failure::FailureKind::InvalidInput
    );
    assert!(refuse_reserved(&task("fine")).is_ok());
}

/// `text` as a corpus the node holds in a file under `dir`.
fn stored(dir: &Path, text: &str) -> StoredCorpus {
    let path = dir.join(blake3::hash(text.as_bytes()).to_hex().as_str());
    std::fs::write(&path, text).unwrap();
    StoredCorpus {
        hash: blake3::hash(text.as_bytes()),
        path,
        size: text.len() as u64,
    }
}

#[test]
fn a_stored_corpus_shares_the_index_of_the_same_bytes_inline_and_a_hit_reads_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1 << 20);
    let corpus = r#"[{"id": "a", "text": "an uploaded corpus"}]"#;
    let blob = stored(blobs.path(), corpus);
    let mut first = TaskSpec::new("j", "retrieval", json!({"query": "q"}));
    let lease = cache.prepare(&mut first, &guest(), Some(&blob)).unwrap();
    assert!(matches!(lease, Lease::Miss(_)));
    assert_eq!(first.payload[INPUT]["from"], "documents_json");
    let handed = mounted(&first).join(CORPUS);
    assert_eq!(std::fs::read_to_string(&handed).unwrap(), corpus);
    std::fs::write(&handed, "what a guest may write where it writes its index").unwrap();
    assert_eq!(
        std::fs::read_to_string(&blob.path).unwrap(),
        corpus,
        "the writable directory holds a copy, never the blob itself"
    );
    std::fs::write(&handed, corpus).unwrap();
    guest_writes(&first, 100);
    lease.finish(true);

    assert!(run(&cache, corpus, 100), "the same bytes inline");
    std::fs::remove_file(&blob.path).unwrap();
    let mut again = TaskSpec::new("j", "retrieval", json!({"query": "q"}));
    let lease = cache.prepare(&mut again, &guest(), Some(&blob)).unwrap();
    assert!(
        matches!(lease, Lease::Hit(_)),
        "keyed by the blob's hash alone"
    );
    assert_eq!(
        std::fs::read_to_string(mounted(&again).join(CORPUS)).unwrap(),
        corpus
    );
    let other = stored(blobs.path(), r#"[{"id": "a", "text": "another corpus"}]"#);
    let mut changed = TaskSpec::new("j", "retrieval", json!({"query": "q"}));
    let lease = cache.prepare(&mut changed, &guest(), Some(&other)).unwrap();
    assert!(matches!(lease, Lease::Miss(_)));
    let mut both = task(corpus);
    assert!(
        cache.prepare(&mut both, &guest(), Some(&blob)).is_none(),
        "a blob and an inline corpus together are not one corpus"
    );
}

#[test]
fn a_stored_corpus_the_cache_takes_no_part_in_is_handed_over_read_only_until_the_task_ends() {
    let blobs = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let blob = stored(blobs.path(), "tiny");
    let dir = tempfile::tempdir().unwrap();
    let mut t = TaskSpec::new("j", "retrieval", json!({"query": "q"}));
    assert!(
        cache(dir.path(), 1000)
            .prepare(&mut t, &guest(), Some(&blob))
            .is_none(),
        "under the cache's smallest corpus"
    );
    let lease = hand_over(&mut t, &blob, scratch.path()).unwrap();
    assert_eq!(
        t.payload,
        json!({"query": "q", "index_cache": {
            "corpus": format!("{GUEST_DIR}/{CORPUS}"), "from": "documents_json"}})
    );
    assert!(!t.mounts[0].writable);
    let handed = mounted(&t).to_path_buf();
    assert_eq!(std::fs::read(handed.join(CORPUS)).unwrap(), b"tiny");
    lease.finish(true);
    assert!(!handed.exists(), "the directory goes with the task");
    assert!(blob.path.exists(), "the blob stays");

    let err = hand_over(&mut t, &blob, scratch.path()).err().unwrap();
    assert_eq!(err.kind, crate::failure::FailureKind::InvalidInput);
    assert!(err.message.contains(GUEST_DIR), "{err}");
}
