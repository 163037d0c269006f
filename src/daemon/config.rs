//! `cineseg.toml`: everything a site sets once (AE titles, folders, limits, destination).
//! Every field has a default so a minimal file is a few lines; unknown keys are errors, so a
//! typo never silently falls back to a default.

use super::DaemonError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DICOM listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where received instances and jobs live.
    pub spool: SpoolConfig,
    /// Model and compute settings.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The results folder.
    pub output: OutputConfig,
    /// Where results are sent (C-STORE); absent: results stay in the output folder only.
    pub destination: Option<DestinationConfig>,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Overnight fine-tuning on corrected contours (off by default).
    #[serde(default)]
    pub finetune: super::overnight::FinetuneConfig,
}

/// The C-STORE/C-ECHO service provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Our AE title.
    pub ae_title: String,
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// Calling AE titles allowed to connect; empty: any.
    pub calling_ae_allow: Vec<String>,
    /// Called AE titles accepted; empty: only `ae_title`.
    pub called_ae_allow: Vec<String>,
    /// Associations served at once; more are rejected (transient, local limit exceeded).
    /// Counted from a whole A-ASSOCIATE-RQ on, so connections that never send one take none.
    pub max_associations: usize,
    /// Connections still negotiating (no whole A-ASSOCIATE-RQ yet) at once; more are refused.
    pub max_negotiating: usize,
    /// Connections, negotiating or established, from one IP address at once.
    pub max_connections_per_address: usize,
    /// A connection must deliver its whole A-ASSOCIATE-RQ within this long (or within
    /// `association_timeout_s`, if that is shorter), or it is closed.
    pub negotiation_timeout_s: u64,
    /// Largest PDU we accept (bytes), advertised in the association.
    pub max_pdu: u32,
    /// An association that sends nothing for this long is aborted.
    pub idle_timeout_s: u64,
    /// An association is aborted after this long, whatever it does.
    pub association_timeout_s: u64,
    /// Refuse new associations when the spool file system has less than this % free.
    pub min_free_percent: f64,
    /// ... or less than this many GB free.
    pub min_free_gb: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ae_title: "CINESEG".into(),
            listen: "0.0.0.0:11112".into(),
            calling_ae_allow: Vec::new(),
            called_ae_allow: Vec::new(),
            max_associations: 8,
            max_negotiating: 64,
            max_connections_per_address: 16,
            negotiation_timeout_s: 5,
            max_pdu: 65536,
            idle_timeout_s: 30,
            association_timeout_s: 1800,
            min_free_percent: 25.0,
            min_free_gb: 5.0,
        }
    }
}

/// The durable receive spool and job queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// State folder: received instances, index, jobs, quarantine, dead letters.
    pub dir: PathBuf,
    /// A series whose slices all have their phase count is complete after this quiet time.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// A series is complete, whatever arrived, after this quiet time.
    #[serde(default = "default_series_idle_s")]
    pub series_idle_s: u64,
    /// Keep received instances after their series was processed (for fine-tuning later).
    #[serde(default)]
    pub keep_received: bool,
    /// With `keep_received` off, how long a processed series' images stay, so that a
    /// continuation arriving later (the rest of a paused transfer) is processed together with
    /// them as a new, superseding version.
    #[serde(default = "default_continuation_window_s")]
    pub continuation_window_s: u64,
}

fn default_continuation_window_s() -> u64 {
    600
}

fn default_settle_ms() -> u64 {
    1500
}
fn default_series_idle_s() -> u64 {
    30
}

/// The model and the compute device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Model file; absent: the shipped model.
    pub model: Option<PathBuf>,
    /// `auto`, `cpu` or `cuda`.
    pub device: String,
    /// CPU threads (0: all cores).
    pub threads: usize,
    /// Images per inference batch.
    pub batch: usize,
    /// Series processed at once (decoding one while another is in inference).
    pub series_in_flight: usize,
    /// Capacity of each channel between stages (messages).
    pub channel_capacity: usize,
    /// Mean foreground confidence below which a "low confidence" flag is raised.
    pub min_confidence: f32,
    /// Segment each slice as soon as all its phases have arrived, while the rest of the series
    /// is still being received (see `daemon::pipeline::speculate`); off: the whole series
    /// after it closes.
    pub streaming: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            model: None,
            device: "auto".into(),
            threads: 0,
            batch: 8,
            series_in_flight: 2,
            channel_capacity: 4,
            min_confidence: 0.6,
            streaming: true,
        }
    }
}

/// The results folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// One sub-folder per processed series.
    pub dir: PathBuf,
    /// Write an overlay secondary capture for every slice at ED and ES.
    #[serde(default = "yes")]
    pub overlays: bool,
}

fn yes() -> bool {
    true
}

/// The PACS (or viewer) that receives our results.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Its AE title.
    pub ae_title: String,
    /// `host:port`.
    pub address: String,
    /// Our calling AE title towards it (default: the server's).
    pub calling_ae_title: Option<String>,
    /// Attempts per result set before it goes to the dead-letter folder.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait between attempts (doubles each time).
    #[serde(default = "default_retry_s")]
    pub retry_delay_s: f64,
    /// Connection/read timeout per association.
    #[serde(default = "default_net_timeout")]
    pub timeout_s: u64,
}

fn default_attempts() -> u32 {
    5
}
fn default_retry_s() -> f64 {
    5.0
}
fn default_net_timeout() -> u64 {
    30
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Seconds between health lines (0: none).
    pub health_interval_s: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            health_interval_s: 60,
        }
    }
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Config, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|e| DaemonError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, DaemonError> {
        let cfg: Config = toml::from_str(text).map_err(|e| DaemonError::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| DaemonError::Config {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        for ae in std::iter::once(&s.ae_title)
            .chain(&s.calling_ae_allow)
            .chain(&s.called_ae_allow)
        {
            if ae.trim().is_empty() || ae.len() > 16 {
                return Err(format!("AE title {ae:?} must be 1 to 16 characters"));
            }
        }
        if s.max_associations == 0 {
            return Err("server.max_associations must be at least 1".into());
        }
        if !(1024..=(1 << 24)).contains(&s.max_pdu) {
            return Err(format!(
                "server.max_pdu {} must be between 1024 and 16777216",
                s.max_pdu
            ));
        }
        if s.max_negotiating == 0 || s.max_connections_per_address == 0 {
            return Err(
                "server.max_negotiating and max_connections_per_address must be at least 1".into(),
            );
        }
        if s.idle_timeout_s == 0 || s.association_timeout_s == 0 || s.negotiation_timeout_s == 0 {
            return Err("server time limits must be at least 1 s".into());
        }
        if !(0.0..100.0).contains(&s.min_free_percent) || s.min_free_gb < 0.0 {
            return Err("server.min_free_percent must be in 0..100 and min_free_gb >= 0".into());
        }
        if self.pipeline.batch == 0
            || self.pipeline.series_in_flight == 0
            || self.pipeline.channel_capacity == 0
        {
            return Err(
                "pipeline.batch, series_in_flight and channel_capacity must be at least 1".into(),
            );
        }
        self.pipeline
            .device
            .parse::<crate::nn::device::DeviceChoice>()
            .map_err(|e| e.to_string())?;
        if self.finetune.enabled {
            self.finetune.validate()?;
            if !self.spool.keep_received {
                return Err("finetune.enabled needs spool.keep_received = true: the images the corrected contours were drawn on must be kept".into());
            }
        }
        if let Some(d) = &self.destination {
            if d.attempts == 0 {
                return Err("destination.attempts must be at least 1".into());
            }
            if d.ae_title.trim().is_empty() || d.ae_title.len() > 16 {
                return Err(format!(
                    "destination AE title {:?} must be 1 to 16 characters",
                    d.ae_title
                ));
            }
        }
        Ok(())
    }

    /// Idle limit per association.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.server.idle_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("cineseg.example.toml");
        let cfg = Config::load(&p).expect("example config");
        assert_eq!(cfg.server.ae_title, "CINESEG");
        assert!(cfg.destination.is_some());
    }

    #[test]
    fn typos_and_bad_limits_are_errors() {
        let base = "[spool]\ndir = \"/tmp/s\"\n[output]\ndir = \"/tmp/o\"\n";
        assert!(Config::parse(base, Path::new("x.toml")).is_ok());
        let typo = format!("{base}[server]\nae_tilte = \"X\"\n");
        let e = Config::parse(&typo, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("ae_tilte"), "{e}");
        let long = format!("{base}[server]\nae_title = \"ABCDEFGHIJKLMNOPQ\"\n");
        assert!(Config::parse(&long, Path::new("x.toml")).is_err());
        let pdu = format!("{base}[server]\nmax_pdu = 10\n");
        assert!(Config::parse(&pdu, Path::new("x.toml")).is_err());
        for bad in [
            "max_negotiating = 0",
            "max_connections_per_address = 0",
            "negotiation_timeout_s = 0",
        ] {
            let text = format!("{base}[server]\n{bad}\n");
            assert!(Config::parse(&text, Path::new("x.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn overnight_fine_tuning_settings_are_checked() {
        let base = "[spool]\ndir = \"/tmp/s\"\nkeep_received = true\n[output]\ndir = \"/tmp/o\"\n";
        let ok = format!("{base}[finetune]\nenabled = true\nwindow = \"22:00-06:00\"\n");
        assert!(
            Config::parse(&ok, Path::new("x.toml"))
                .expect("valid")
                .finetune
                .enabled
        );
        for (bad, needle) in [
            ("window = \"25:00-06:00\"", "finetune.window"),
            ("subset = \"some\"", "finetune.subset"),
            ("margin = -0.1", "finetune.margin"),
            ("epochs1 = 0\nepochs2 = 0", "recipe"),
        ] {
            let text = format!("{base}[finetune]\nenabled = true\n{bad}\n");
            let e = Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let discarding =
            "[spool]\ndir = \"/tmp/s\"\n[output]\ndir = \"/tmp/o\"\n[finetune]\nenabled = true\n";
        let e = Config::parse(discarding, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keep_received"), "{e}");
    }
}
