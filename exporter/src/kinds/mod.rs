//! The probe kinds: one module per kind, each declaring what the rest of the exporter needs from it: its
//! [`crate::driver::Adapter`] (its target, its schedule as one value, what a round needs first, its logs and
//! what each outcome records), its rows and sections on the status page, its step or notes for the doctor
//! ([`crate::checkup`]), and its record, its families and status ([`crate::record::kinds::KindRecord`]: tunnel
//! and first byte keep [`uptime`] together, as the uptime ledger joins their rounds).
//!
//! The registry, which the rest walks without naming a kind: [`KINDS`], one entry per kind holding everything
//! the kind declares ([`Kind`]: its record, its start, its parts of the status page and of the doctor's list,
//! its timeline events). The recorder is built with the records, registers their families and puts their status
//! in `/api/status`; each generation runs every start, which decides from the configuration whether, and for
//! what, the kind runs; [`page`] puts the kinds' page parts in the page's order by their places ([`Row`],
//! [`AfterTable`], [`Section`]), [`doctor`] their steps and notes by their layers ([`checkup::Layer`]). What an
//! entry takes and a start is given is [`start`]'s.

use crate::checkup::{self, ListedStep};
#[cfg(test)]
use crate::config::Config;

pub mod auth;
pub mod control_ui;
pub mod exposure;
pub mod first_byte;
pub mod model_host;
pub mod openclaw_cli_url;
pub mod openclaw_cli_version;
pub mod readiness;
pub mod route;
pub mod ssh_hygiene;
mod start;
pub mod tunnel;
pub mod uptime;
pub mod ws_handshake;

pub use start::{
    prepare, tap_sink, AfterTable, Entry, ForwardPart, Kind, PagePart, PrepareError, Prepared, Row, Section, Start,
};

/// Every kind, its record and its start in one entry ([`Kind`]): the recorder is built with their records (in
/// this order: the order of their families on `/metrics`), and each generation starts every one of them.
pub const KINDS: &[Entry] = &[
    Entry::of::<tunnel::Uptime>(),
    Entry::of::<readiness::GatewayReadiness>(),
    Entry::of::<ssh_hygiene::SshHygiene>(),
    Entry::of::<openclaw_cli_url::CliUrl>(),
    Entry::of::<openclaw_cli_version::CliVersion>(),
    Entry::of::<ws_handshake::WsHandshake>(),
    Entry::of::<model_host::ModelHosts>(),
    Entry::of::<exposure::Exposure>(),
    Entry::of::<control_ui::ControlUi>(),
    Entry::of::<auth::Auth>(),
];

/// The records of [`KINDS`], as the recorder is built with them.
pub fn records() -> Vec<crate::record::kinds::NewKindRecord> {
    KINDS.iter().map(|entry| entry.record).collect()
}

/// Start every kind of [`KINDS`] for the generation `start` begins.
pub fn start_all(start: &mut Start<'_>) {
    for entry in KINDS {
        (entry.start)(start);
    }
}

/// The status page's parts, every kind's, each list in the page's order: a forward's rows, what follows its
/// table, the sections after the forwards.
pub struct Page {
    /// The rows of each forward's table.
    pub rows: Vec<ForwardPart>,
    /// What follows each forward's table.
    pub after_table: Vec<ForwardPart>,
    /// The sections after the forwards.
    pub sections: Vec<fn(&crate::record::status::StatusReport) -> String>,
}

/// Every kind's parts of the status page ([`Kind::PAGE`]), put in the page's order by their places.
pub fn page() -> &'static Page {
    static PAGE: std::sync::LazyLock<Page> = std::sync::LazyLock::new(|| {
        let parts = || KINDS.iter().flat_map(|entry| entry.page.iter().copied());
        let mut rows: Vec<_> =
            parts().filter_map(|p| if let PagePart::Row(at, f) = p { Some((at, f)) } else { None }).collect();
        let mut after_table: Vec<_> =
            parts().filter_map(|p| if let PagePart::AfterTable(at, f) = p { Some((at, f)) } else { None }).collect();
        let mut sections: Vec<_> =
            parts().filter_map(|p| if let PagePart::Section(at, f) = p { Some((at, f)) } else { None }).collect();
        rows.sort_by_key(|(at, _)| *at);
        after_table.sort_by_key(|(at, _)| *at);
        sections.sort_by_key(|(at, _)| *at);
        Page {
            rows: rows.into_iter().map(|(_, f)| f).collect(),
            after_table: after_table.into_iter().map(|(_, f)| f).collect(),
            sections: sections.into_iter().map(|(_, f)| f).collect(),
        }
    });
    &PAGE
}

/// The words of the timeline event `name`, from the kind that writes it ([`Kind::TIMELINE`]).
pub fn timeline_words(name: &str) -> Option<&'static str> {
    KINDS.iter().flat_map(|entry| entry.timeline).find(|known| known.name == name).map(|known| known.words)
}

/// The doctor's self-rescue list, from the network up ([`checkup::Layer`]): each layer's check from the kind
/// that measures it, with the notes other kinds add at that layer ([`Kind::DOCTOR`]). A step's number is its
/// place here (a failure's exit code is 10 + it).
pub fn doctor() -> &'static [ListedStep] {
    static DOCTOR: std::sync::LazyLock<Vec<ListedStep>> =
        std::sync::LazyLock::new(|| checkup::list(KINDS.iter().flat_map(|entry| entry.doctor)));
    &DOCTOR
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;
    use std::sync::Arc;

    /// Each entry's record constructor builds the record its start takes, alone and among all the others: a kind
    /// whose `RECORD` is another kind's, or whose record the recorder was not built with, fails here.
    #[test]
    fn every_kind_s_record_is_the_one_its_start_takes() {
        let all = Recorder::with_kinds(&records(), Vec::new());
        for (index, entry) in KINDS.iter().enumerate() {
            assert!((entry.held_by)(&all), "KINDS[{index}]: the recorder built from KINDS lacks its record");
            let alone = Recorder::with_kinds(&[entry.record], Vec::new());
            assert!((entry.held_by)(&alone), "KINDS[{index}]: its RECORD builds another kind's record");
        }
    }

    /// Every doctor part lands on a layer with one check, and the list keeps the layers' order: a note or a
    /// direct route's check at a layer nobody checks would never run.
    #[test]
    fn every_doctor_part_lands_on_a_layer_with_exactly_one_check() {
        use crate::checkup::{DoctorPart, Layer};
        let parts: Vec<&DoctorPart> = KINDS.iter().flat_map(|entry| entry.doctor).collect();
        let checked: Vec<Layer> =
            parts.iter().filter_map(|p| if let DoctorPart::Step(at, _) = p { Some(*at) } else { None }).collect();
        let mut unique = checked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), checked.len(), "two kinds check the same layer: {checked:?}");
        for part in &parts {
            if let DoctorPart::Notes(at, _) | DoctorPart::OnDirectRoute(at, ..) = part {
                assert!(checked.contains(at), "a part at {at:?}, which no kind checks");
            }
        }
        let notes: usize = doctor().iter().map(|step| step.notes.len()).sum();
        let declared = parts.iter().filter(|p| matches!(p, DoctorPart::Notes(..))).count();
        assert_eq!(notes, declared, "every declared note is in the list");
        assert_eq!(doctor().iter().filter(|step| step.on_direct_route.is_some()).count(), 3);
    }

    /// Every place on the page is taken by one kind at most, and every timeline event is declared once: two rows
    /// at one place would be ordered by the registry's order, not the page's.
    #[test]
    fn every_page_place_and_timeline_event_is_declared_once() {
        let parts: Vec<PagePart> = KINDS.iter().flat_map(|entry| entry.page.iter().copied()).collect();
        let mut places: Vec<String> = parts
            .iter()
            .map(|part| match part {
                PagePart::Row(at, _) => format!("{at:?}"),
                PagePart::AfterTable(at, _) => format!("after {at:?}"),
                PagePart::Section(at, _) => format!("section {at:?}"),
            })
            .collect();
        let all = places.len();
        places.sort();
        places.dedup();
        assert_eq!(places.len(), all, "{places:?}");
        let page = page();
        assert_eq!(page.rows.len() + page.after_table.len() + page.sections.len(), all);
        let mut events: Vec<&str> = KINDS.iter().flat_map(|entry| entry.timeline).map(|event| event.name).collect();
        let declared = events.len();
        events.sort();
        events.dedup();
        assert_eq!(events.len(), declared, "{events:?}");
        assert_eq!(timeline_words("tunnel_down"), Some(uptime::TUNNEL_DOWN.words));
    }

    /// Every kind starts on a recorder built from the registry, for a config with a forward, a gateway and a
    /// model host: a start that found no record would panic here, not go quiet.
    #[tokio::test]
    async fn every_kind_starts_on_the_registry_s_recorder() {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(
            file.path(),
            "[[gateway]]\nname = \"g\"\n[[model_host]]\nname = \"m\"\nurl = \"https://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let config = Config::load(Some(file.path())).unwrap();
        let recorder = Arc::new(Recorder::with_kinds(&records(), Vec::new()));
        recorder.apply_config(&config);
        let (owner_index, process_table) = (Default::default(), Default::default());
        let cancel = tokio_util::sync::CancellationToken::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        let ctx = crate::driver::TaskContext { recorder: recorder.clone(), permits, cancel: cancel.clone() };
        let mut tasks = tokio::task::JoinSet::new();
        let prepared = prepare(&config).unwrap();
        let mut start = Start::new(&config, &recorder, &owner_index, &process_table, prepared, &mut tasks, ctx);
        start_all(&mut start);
        // The default forward's tunnel, first byte, readiness, hygiene, handshake, auth probe, Control UI and
        // token watch; the CLI's URL and version; the gateway's exposure; the model host.
        assert!(tasks.len() >= 12, "{} tasks", tasks.len());
        cancel.cancel();
        tasks.shutdown().await;
    }
}
