//! The README's demo works on a fresh machine: no reaction binary, the bundled log and
//! reaction configuration, every family on the page.

use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn demo_runs_and_shows_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let e = Exporter::start(dir.path(), &config);
    let body = wait_for(Duration::from_secs(10), "the demo's matches", || {
        let b = e.scrape();
        b.contains("reaction_match_count").then_some(b)
    });
    for family in [
        "reaction_exporter_build_info",
        "reaction_status_info{version=\"N/A\",status=\"0\"} 1.0",
        "reaction_commands_count",
        "reaction_stream_event_count",
        "reaction_match_count{stream=\"mail\",filter=\"spam\",email=\"example.org\"} 1.0",
        "reaction_action_count{stream=\"ssh\",filter=\"failedlogin\",action=\"unban\",ip=\"192.0.2.1\",user=\"root\"} 1.0",
        "reaction_exporter_lines_read_total 24.0",
        "reaction_exporter_lines_rejected_total{reason=\"unknown\"} 1.0",
    ] {
        assert!(body.contains(family), "{family} missing from\n{body}");
    }
    assert!(e.logs().contains("read reaction's configuration directly"));
    assert!(e.terminate().success());
}
