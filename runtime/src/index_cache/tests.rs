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
    match cache.prepare(&mut t, &guest()).unwrap() {
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
    assert_ne!(
        base,
        Key::new(&guest(), "documents_json", &json!(docs.to_string()))
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
    let lease = cache.prepare(&mut first, &guest()).unwrap();
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
    let lease = cache.prepare(&mut second, &guest()).unwrap();
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
    let _lease = cache.prepare(&mut listed, &guest()).unwrap();
    assert_eq!(listed.payload[INPUT]["from"], "documents");
    assert_eq!(
        std::fs::read(mounted(&listed).join(CORPUS)).unwrap(),
        serde_json::to_vec(&docs).unwrap()
    );
    let large = "x".repeat(1000);
    let mut t = task(&large);
    assert!(cache.prepare(&mut t, &guest()).is_none());
    assert_eq!(t.payload["documents_json"], large.as_str());
    assert!(t.mounts.is_empty());
}

#[test]
fn a_failed_task_or_an_oversized_index_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1000);
    let mut t = task("a corpus that failed");
    let lease = cache.prepare(&mut t, &guest()).unwrap();
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
    let pin = cache.prepare(&mut reader, &guest()).unwrap();
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
        let _lease = cache.prepare(&mut t, &guest()).unwrap();
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
    assert!(cache.prepare(&mut task("tiny"), &guest()).is_none());
    let mut both = task("documents twice given");
    both.payload["documents"] = json!("and again");
    assert!(cache.prepare(&mut both, &guest()).is_none());
    let mut directory = task("documents and a directory");
    directory.payload["directory"] = json!("/data");
    assert!(cache.prepare(&mut directory, &guest()).is_none());
    let mut forged = task("a task that names its own index");
    forged.payload[INPUT] = json!({"read": "/data/index.bm25"});
    assert_eq!(
        refuse_reserved(&forged).unwrap_err().kind,
        crate::failure::FailureKind::InvalidInput
    );
    assert!(refuse_reserved(&task("fine")).is_ok());
}
