//! `wasmnode agent --protocol goliat` against a small GOLIAT-style
//! dashboard: heartbeats, assignments with a config mounted read-only,
//! completion and failure reports, an auto-detected machine id, and a
//! dashboard that is down when the node starts.

use serde_json::Value;
use std::time::{Duration, Instant};
use wasmnode_e2e::goliat::{TestDashboard, command_config};
use wasmnode_e2e::{NodeProcess, test_guest};

const WAIT: Duration = Duration::from_secs(60);

async fn job_of_split(node: &NodeProcess, split: u64) -> Value {
    let list: Value = node.get_json("/jobs?limit=1000").await;
    let id = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| {
            j["job_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("goliat-{split}-"))
        })
        .expect("the split's job")["job_id"]
        .clone();
    node.get_json(&format!("/jobs/{}", id.as_str().unwrap()))
        .await
}

#[tokio::test]
async fn wasm_assignments_get_their_config_and_report_success_and_failure() {
    let mut dashboard = TestDashboard::new();
    dashboard.serve().await;
    let node = NodeProcess::start_goliat(&dashboard.url(), &command_config()).await;
    dashboard.assign("c1.json", "{\"shard\": \"one\"}", 7);
    let reports = dashboard.wait_reports(1, WAIT).await;
    assert_eq!(
        (
            reports[0]["status"].as_str(),
            reports[0]["split_index"].as_u64()
        ),
        (Some("completed"), Some(7)),
        "{reports:?}"
    );
    let machine = reports[0]["machineId"].as_str().unwrap().to_string();
    assert!(!machine.is_empty());
    assert!(
        machine.parse::<std::net::IpAddr>().is_ok() || machine == hostname(),
        "machine id is the primary IP or the host name: {machine}"
    );
    let job = job_of_split(&node, 7).await;
    let stdout = job["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("SPLIT_INDEX=7") && stdout.contains("CONFIG_PATH=/config/config.json"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WASMNODE_MOUNTS=/config:ro"),
        "the config is mounted read-only: {stdout}"
    );
    assert!(
        stdout.contains("\"split_index\":7"),
        "the assignment arrives on stdin: {stdout}"
    );

    // Heartbeats (every second) and polls go on while the node is idle.
    let deadline = Instant::now() + WAIT;
    while dashboard.heartbeats().len() < 2 || dashboard.polls() < 2 {
        assert!(
            Instant::now() < deadline,
            "{:?}, {} polls",
            dashboard.heartbeats(),
            dashboard.polls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dashboard.heartbeats().iter().all(|(id, _)| *id == machine));
}

#[tokio::test]
async fn failures_are_reported_and_a_late_dashboard_is_waited_for() {
    let mut dashboard = TestDashboard::new();
    let command = test_guest("command");
    let config = format!(
        "[goliat]\nmachine_id = \"rig-3\"\nheartbeat_seconds = 1\npoll_seconds = 1\n[control_plane]\nbackoff_max_seconds = 1\n[goliat.job]\nmode = \"wasm\"\ncomponent = {:?}\nargs = [\"5\"]\n",
        command.display().to_string()
    );
    let node = NodeProcess::start_goliat(&dashboard.url(), &config).await;
    // The node runs without its dashboard, and says so.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let health: Value = node.get_json("/health").await;
        if health["control_plane"]["state"] == "disconnected"
            && !health["control_plane"]["last_error"].is_null()
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dashboard.serve().await;
    dashboard.assign("c2.json", "{}", 1);
    let reports = dashboard.wait_reports(1, WAIT).await;
    assert_eq!(reports[0]["machineId"], "rig-3");
    assert_eq!(reports[0]["status"], "failed");
    assert!(
        reports[0]["error"]
            .as_str()
            .unwrap()
            .contains("NON_ZERO_EXIT"),
        "{reports:?}"
    );
}

#[tokio::test]
async fn image_assignments_read_their_config_from_a_read_only_mount() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-image.sh");
    let image = String::from_utf8(std::process::Command::new(script).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let mut dashboard = TestDashboard::new();
    dashboard.serve().await;
    let config = format!(
        "[node]\nworker_id = \"goliat-img\"\n[docker]\nmode = \"on\"\n[goliat]\nheartbeat_seconds = 1\npoll_seconds = 1\n[goliat.job]\nmode = \"image\"\nimage = {image:?}\ncmd = [\"sh\", \"-c\", \"cat $CONFIG_PATH; echo; echo split=$SPLIT_INDEX; touch /config/x 2>&1 || true\"]\n"
    );
    let node = NodeProcess::start_goliat(&dashboard.url(), &config).await;
    dashboard.assign("c3.json", "{\"rows\": [1, 2, 3]}", 2);
    let reports = dashboard.wait_reports(1, WAIT).await;
    assert_eq!(reports[0]["status"], "completed", "{reports:?}");
    let stdout = job_of_split(&node, 2).await["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stdout.starts_with("{\"rows\": [1, 2, 3]}\nsplit=2\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Read-only file system"), "{stdout}");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}
