//! `ctdbd`: parse options, daemonise, start the cores, serve clients until
//! SIGTERM. See the crate documentation of `ctdb_daemon` for the layout.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use ctdb_config::{Nodes, Tunables};
use ctdb_daemon::client;
use ctdb_daemon::cluster::membership::Membership;
use ctdb_daemon::cluster::node::Node;
use ctdb_daemon::cluster::{CTDB_CAP_LMASTER, CTDB_CAP_RECMASTER, NODE_FLAGS_PERMANENTLY_DISABLED};
use ctdb_daemon::db::{Databases, DbConfig};
use ctdb_daemon::error::DaemonError;
use ctdb_daemon::event::eventd::{eventd_path, EventBackend, EventdProcess};
use ctdb_daemon::logging;
use ctdb_daemon::monitor;
use ctdb_daemon::options::{Options, Settings};
use ctdb_daemon::process::{self, PidFile, ReadyPipe};
use ctdb_daemon::runtime::{self, Runtime, RuntimeConfig};
use ctdb_daemon::state::{Daemon, Identity};
use ctdb_daemon::sys;

/// Samba release whose behaviour we follow.
const SAMBA_VERSION: &str = "4.17.12";

fn main() {
    let options = Options::parse();
    let settings = match Settings::from_process(options).and_then(|s| {
        s.check_directories()?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ctdbd: {e}");
            std::process::exit(1);
        }
    };
    let mut ready = if settings.interactive {
        ReadyPipe::none()
    } else {
        match process::daemonize(settings.test_mode) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ctdbd: {e}");
                std::process::exit(1);
            }
        }
    };
    if let Err(e) = logging::init(&settings.log_target, settings.log_level) {
        let msg = e.to_string();
        ready.failed(&msg);
        eprintln!("ctdbd: {msg}");
        std::process::exit(1);
    }
    for w in settings.config.warnings() {
        tracing::warn!("{w}");
    }
    let code = match run(&settings, &mut ready) {
        Ok(()) => 0,
        Err((code, e)) => {
            tracing::error!("{e}");
            ready.failed(&e.to_string());
            code
        }
    };
    if code == 0 {
        tracing::info!("CTDB daemon shutting down");
    }
    std::process::exit(code);
}

fn run(settings: &Settings, ready: &mut ReadyPipe) -> Result<(), (i32, DaemonError)> {
    tracing::info!("CTDB starting on node");
    // Before any thread exists, so every thread inherits the mask.
    process::block_signals().map_err(|e| (1, e))?;
    tracing::error!(
        "Starting CTDBD (Version {SAMBA_VERSION}) as PID: {}",
        std::process::id()
    );
    let _pidfile = PidFile::create(&settings.pidfile).map_err(|e| (11, e))?;
    let listener = client::bind_socket(&settings.socket).map_err(|e| (10, e))?;

    let parts = build_node(settings).map_err(|e| (1, e))?;
    // As upstream: the public addresses are loaded at start, a bad file
    // or an unknown interface is fatal.
    let pa_path = settings.paths.public_addresses_file();
    let pa_iface = settings.options.public_interface.clone();
    let pa = ctdb_config::PublicAddresses::load_with_default_iface(&pa_path, pa_iface.as_deref())
        .map_err(|e| {
        (
            1,
            DaemonError::BadOption {
                option: "public addresses",
                why: e.to_string(),
            },
        )
    })?;
    if pa.path.is_none() {
        tracing::warn!(
            "Not loading public addresses, no file {}",
            pa_path.display()
        );
    }
    let takeover = ctdb_daemon::takeover::Takeover::new(
        pa_path.clone(),
        &pa,
        pa_iface,
        settings.test_mode,
        settings.config.failover_disabled(),
    )
    .map_err(|why| {
        (
            1,
            DaemonError::BadOption {
                option: "public addresses",
                why: format!("Unable to setup public IP addresses: {why}"),
            },
        )
    })?;
    if pa.path.is_some() {
        tracing::info!("Loaded public addresses from {}", pa_path.display());
    }
    let mut takeover = Some(takeover);
    // As upstream: the event daemon is started before the init event, with
    // the daemon's pid to watch.
    let eventd = start_eventd(settings).map_err(|e| (1, e))?;
    let backend = eventd
        .as_ref()
        .map(|e| EventBackend::Daemon(e.socket().to_path_buf()));

    // Default: one core per allowed CPU, pinned. In test mode (several
    // daemons on one host, as upstream's CTDB_TEST_MODE assumes) one
    // unpinned core unless --cores says otherwise: a client's call still
    // crosses from core 0 to a data core and back, and daemons that share
    // CPUs spend their time waking each other's threads (fetch-ring 4939
    // migrations/s with one core against 3575 with a data core on this
    // 2-CPU host, perf/RESULTS.md run 7).
    let shared_host = settings.test_mode && settings.cores.is_none();
    let allowed = sys::affinity(0).map(|c| c.len().max(1)).unwrap_or(1);
    let cores = match settings.cores {
        Some(n) => n,
        None if shared_host => 1,
        None => allowed,
    };
    // In test mode more cores than CPUs may be asked for (a cluster's
    // worth of data cores on a small host): they run unpinned and without
    // SCHED_FIFO. A core waiting for another (glommio polls while a
    // cross-core channel connects) would otherwise keep a same-priority
    // real-time core off the CPU for good.
    let oversubscribed = settings.test_mode && cores > allowed;
    if oversubscribed && settings.realtime {
        tracing::info!(
            "{cores} cores on {allowed} CPUs: running unpinned, without real-time scheduling"
        );
    }
    let cfg = RuntimeConfig {
        cores,
        pin: !shared_host && !oversubscribed,
        realtime: settings.realtime && !oversubscribed,
        mlock: settings.mlock,
        ..RuntimeConfig::default()
    };
    let (accept_ring, accept_end) =
        runtime::bell_pair().map_err(|e| (1, DaemonError::sys("socketpair", e)))?;
    let accepted = client::spawn_accept_thread(listener, accept_ring).map_err(|e| (1, e))?;

    let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let fatal2 = fatal.clone();
    let notification_script = settings.paths.notification_script();
    let debug_level = settings.log_level as u32;
    let mutex_helper = settings
        .paths
        .helper("CTDB_CLUSTER_MUTEX_HELPER", "ctdb_mutex_fcntl_helper");
    let port = ctdb_config::addr::ctdb_port();
    let fast_start = settings.test_mode;
    let rt = Runtime::start(cfg, move |core| async move {
        let NodeParts {
            id,
            node,
            dbs,
            tunables,
            reclock,
        } = parts;
        let mut daemon = Daemon::new(
            id,
            node,
            dbs,
            tunables,
            debug_level,
            reclock,
            backend,
            notification_script,
        );
        daemon.mutex_helper = mutex_helper;
        daemon.fast_start = fast_start;
        if let Some(t) = takeover.take() {
            daemon.takeover = t;
        }
        daemon.data_cores = ctdb_daemon::shards::DataCores::new(core.clone()).map(Rc::new);
        let daemon = Rc::new(daemon);
        let stop = core.stop_signal();
        if let Err(e) = ctdb_daemon::peers::start(&daemon, port).await {
            if let Ok(mut f) = fatal2.lock() {
                *f = Some(format!("Failed to start the node transport: {e}"));
            }
            return;
        }
        match core.ping_all(1).await {
            Ok(p) => tracing::debug!("{} data shard(s) answered: {p:?}", p.len()),
            Err(e) => tracing::error!("data cores not answering: {e}"),
        }
        match runtime::attach_bell(accept_end) {
            Ok(bell) => {
                glommio::spawn_local(client::serve(daemon.clone(), accepted, bell, stop.clone()))
                    .detach();
            }
            Err(e) => {
                tracing::error!("cannot attach the accept queue: {e}");
                return;
            }
        }
        let r = monitor::run(daemon.clone(), stop).await;
        ctdb_daemon::peers::stop(&daemon);
        if let Err(monitor::Fatal(why)) = r {
            if let Ok(mut f) = fatal2.lock() {
                *f = Some(why);
            }
        }
    })
    .map_err(|e| (1, e))?;
    if rt.cores().iter().any(|c| c.realtime) {
        tracing::info!("Set real-time scheduler priority");
    }
    for c in rt.cores() {
        tracing::info!(
            "core {} on CPU {}: {:?}{}",
            c.index,
            c.cpu,
            c.role,
            if c.realtime { ", SCHED_FIFO" } else { "" }
        );
    }
    process::spawn_signal_thread(rt.stopper()).map_err(|e| (1, e))?;
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if settings.test_mode {
        process::watch_stdin(rt.stopper(), stdin_closed.clone());
    }
    ready.ready();
    let r = rt.join().map_err(|e| (1, e));
    client::remove_socket(&settings.socket);
    if let Some(e) = eventd {
        e.stop();
    }
    r?;
    if let Some(why) = fatal.lock().ok().and_then(|mut f| f.take()) {
        return Err((1, DaemonError::sys("start-up", std::io::Error::other(why))));
    }
    if stdin_closed.load(Ordering::SeqCst) {
        return Err((
            process::EXIT_STDIN_CLOSED,
            DaemonError::sys("stdin", std::io::ErrorKind::BrokenPipe.into()),
        ));
    }
    Ok(())
}

/// What the control core's state is built from (made before the runtime
/// starts, so errors stop start-up with a clear message).
struct NodeParts {
    id: Identity,
    node: Node,
    dbs: Databases,
    tunables: Tunables,
    reclock: Option<String>,
}

fn build_node(settings: &Settings) -> Result<NodeParts, DaemonError> {
    let config = &settings.config;
    let paths = &settings.paths;
    let nodes_path = paths.nodes_file();
    let nodes = Nodes::load(&nodes_path).map_err(|e| DaemonError::BadOption {
        option: "nodes file",
        why: e.to_string(),
    })?;
    let id = Identity::resolve(nodes, config.node_address())?;
    tracing::info!(
        "PNN is {} ({})",
        id.pnn,
        id.addr(id.pnn).map(|a| a.to_string()).unwrap_or_default()
    );
    let tun_path = paths.tunables_file();
    let tunables = match Tunables::load_lenient(&tun_path) {
        Ok((t, errors)) => {
            for e in errors {
                tracing::error!("{e}");
            }
            t
        }
        Err(e) => {
            return Err(DaemonError::BadOption {
                option: "tunables file",
                why: e.to_string(),
            })
        }
    };
    let mut caps = ctdb_daemon::cluster::CTDB_CAP_DEFAULT;
    if !config.lmaster_capability() {
        caps &= !CTDB_CAP_LMASTER;
    }
    if !config.leader_capability() {
        caps &= !CTDB_CAP_RECMASTER;
    }
    let t = |name: &str, dflt: u32| tunables.get(name).unwrap_or(dflt);
    let ctun = ctdb_daemon::cluster::Tunables {
        recover_interval: t("RecoverInterval", 1),
        recover_timeout: t("RecoverTimeout", 30),
        election_timeout: t("ElectionTimeout", 3),
        rerecovery_timeout: t("RerecoveryTimeout", 10),
        recovery_ban_period: t("RecoveryBanPeriod", 300),
        enable_bans: t("EnableBans", 1) != 0,
        recovery_grace_period: t("RecoveryGracePeriod", 120),
        keepalive_interval: t("KeepaliveInterval", 5),
        keepalive_limit: t("KeepaliveLimit", 5),
        leader_timeout: config.leader_timeout(),
        // Upstream: test mode sets fast_start (first election 0.5 s).
        fast_start: settings.test_mode,
    };
    let addrs = id
        .nodes
        .borrow()
        .entries
        .iter()
        .map(|e| (!e.deleted).then(|| e.addr.to_string()))
        .collect();
    let membership = Membership::new(id.pnn, addrs, caps, 0, &ctun);
    let mut node = Node::new(membership, false, ctun);
    if config.start_as_disabled() {
        tracing::error!("This node is configured to start in DISABLED state");
        node.membership
            .update_own_flags(NODE_FLAGS_PERMANENTLY_DISABLED, 0);
    }
    if config.start_as_stopped() {
        tracing::error!("This node is configured to start in STOPPED state");
        let _ = node.stop();
    }
    let dbs = Databases::open(DbConfig::from_config(id.pnn, config, &tunables))?;
    Ok(NodeParts {
        reclock: config.cluster_lock().map(str::to_string),
        id,
        node,
        dbs,
        tunables,
    })
}

fn start_eventd(settings: &Settings) -> Result<Option<EventdProcess>, DaemonError> {
    let exe = eventd_path(&settings.paths);
    let socket = ctdb_daemon::event::client::socket_path(&settings.paths);
    let p = EventdProcess::start(&exe, std::process::id(), &socket, &[])?;
    Ok(Some(p))
}
