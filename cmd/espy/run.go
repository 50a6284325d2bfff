package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/ikeservice"
	"github.com/espy-dpi/espy/inline"
	"github.com/espy-dpi/espy/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

const runUsage = `NAME
    espy run - the inline ESP-NULL inspection appliance

SYNOPSIS
    espy run --iface IF [--iface IF2] [--config FILE] [flags]
    espy run --config FILE        (IKE only: the config has tunnels, no interfaces)

DESCRIPTION
    Attaches espy's XDP program to one interface (monitor mode: verdicts,
    counters and policy drops on that link) or two (a bump-in-the-wire
    bridge that forwards every passing frame from one to the other with
    bpf_redirect_map). The program sends the first packets of each new ESP
    flow to this process, which decides with the RFC 5879 heuristics whether
    the flow is ESP-NULL or encrypted and writes the verdict into the BPF
    verdict map; from then on the fast path alone opens ESP-NULL packets,
    looks up their inner 5-tuple in the inner rules, and applies the action
    configured for encrypted flows. Unknown flows pass while pending
    (fail-open) unless the configuration says fail: closed.

    Maps and links are pinned under the pin path (default /sys/fs/bpf/espy),
    so a restart keeps every verdict. SIGINT and SIGTERM detach the program
    and exit; SIGHUP reopens the verdict log (for logrotate) and, when the
    configuration has a policy section, re-reads it: a bad policy is
    logged with its file, line and reason and the old one stays; a good
    one is published to the fast path in one switch and, with tunnels,
    applied to their Child SAs (as "espy ike reload").

    Verdict records are JSON lines with Elastic Common Schema names, the same
    schema as "espy replay --format jsonl" (docs/verdict-schema.md). The
    configuration file is YAML (docs/espy.example.yaml); command-line flags
    override it. A bad configuration is rejected at start with the file,
    line and reason.

IKE
    When the configuration has tunnels (tunnels: and ike: sections,
    docs/ike.md "Service"), espy run also runs the IKEv2 daemon: it listens
    on UDP 500 and 4500 (ike.listen, ike.port, ike.nat_port), answers the
    peers of respond and start tunnels, initiates start tunnels and keeps
    them up, and registers every Child SA with the fast path so that its
    ESP is classified from the negotiated algorithms, never guessed.
    "espy ike status | initiate NAME | terminate NAME" talk to it over the
    control socket (ike.socket, default /run/espy/ike.sock, mode 0600).
    Tunnels a PROTECT rule of the policy section names take their traffic
    selectors from the SPD (proposed as initiator, narrowed as responder),
    others from the tunnel's local_ts and remote_ts. After a policy reload
    (SIGHUP or "espy ike reload") a Child SA whose selectors cover traffic
    the new SPD routes elsewhere is rekeyed with narrowed selectors, or
    deleted when none of its traffic is routed to its tunnel any more.
    Without interfaces, espy run runs the IKE daemon alone (no XDP; for
    tests and for gateways inspected elsewhere). On SIGINT or SIGTERM every
    IKE SA is deleted with an INFORMATIONAL Delete, waiting at most 5 s for
    the peers.

EXIT STATUS
    0   stopped by a signal after a clean detach
    1   the appliance failed while running, or could not detach cleanly
    2   bad command line or configuration
    4   could not start: no privilege to load BPF, interface missing, pinned
        maps of another size, IKE ports or control socket in use

FILES
    /etc/espy/espy.yaml            configuration (any path, with --config)
    /sys/fs/bpf/espy               pinned maps and links
    /run/espy/ike.sock             IKE control socket (with tunnels)
    /var/log/espy/verdicts.jsonl   a typical --log path

FLAGS
`

// exitStart is the exit code for a failure to start the appliance.
const exitStart = 4

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ifaces stringList
	fs.Var(&ifaces, "iface", "interface to attach to (repeat once for bridge mode)")
	var (
		cfgFile    = fs.String("config", "", "YAML configuration `file`")
		format     = fs.String("format", "jsonl", "verdict log format (jsonl)")
		logPath    = fs.String("log", "", "verdict log `file`, reopened on SIGHUP (default: the config's log.path, else stdout)")
		metrics    = fs.String("metrics", "", "serve Prometheus metrics on `addr:port` at /metrics")
		pinPath    = fs.String("pin-path", "", "bpffs `directory` for pinned maps and links (default /sys/fs/bpf/espy)")
		failClosed = fs.Bool("fail-closed", false, "drop packets of unknown ESP flows while pending")
		attach     = fs.String("attach", "", "XDP attach mode: auto, driver or generic")
		logLevel   = fs.String("log-level", "", "diagnostics level on stderr: debug, info, warn, error")
		ikeSocket  = fs.String("ike-socket", "", "IKE control socket `path` (default: the config's ike.socket, else "+config.DefaultSocket+")")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "espy run: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg := &config.Config{}
	if *cfgFile != "" {
		var err error
		if cfg, err = config.Load(*cfgFile); err != nil {
			fmt.Fprintf(stderr, "espy run: %v\n", err)
			return exitUsage
		}
	}
	if len(ifaces) > 0 {
		cfg.Interfaces = ifaces
	}
	if (len(cfg.Interfaces) == 0 && !cfg.HasTunnels()) || len(cfg.Interfaces) > 2 {
		fmt.Fprintln(stderr, "espy run: give one interface (monitor) or two (bridge) with --iface or in the config, or tunnels in the config (IKE only)")
		return exitUsage
	}
	if *format != "jsonl" {
		fmt.Fprintf(stderr, "espy run: unknown format %q (jsonl)\n", *format)
		return exitUsage
	}
	if *logPath != "" {
		cfg.Log.Path = *logPath
	}
	if *metrics != "" {
		cfg.Metrics.Listen = *metrics
	}
	if *pinPath != "" {
		cfg.PinPath = *pinPath
	}
	if cfg.PinPath == "" {
		cfg.PinPath = "/sys/fs/bpf/espy"
	}
	if *failClosed {
		cfg.Fail = "closed"
	}
	if *attach != "" {
		cfg.Attach = *attach
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	level, err := zerolog.ParseLevel(cfg.Log.Level)
	if err != nil || cfg.Log.Level == "" {
		level = zerolog.InfoLevel
	}
	log := zerolog.New(stderr).Level(level).With().Timestamp().Str("component", "espy-run").Logger()
	if len(cfg.Interfaces) == 0 {
		return runIKEOnly(cfg, *ikeSocket, log, stderr)
	}

	out, err := inline.OpenOutput(cfg.Log.Path, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "espy run: %v\n", err)
		return exitStart
	}
	defer out.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d, err := inline.Start(cfg, out, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "espy run: %v\n", err)
		return exitStart
	}
	log.Info().Str("config", cfg.String()).Str("pin_path", cfg.PinPath).Msg("espy running")
	var svc *ikeservice.Service
	if cfg.HasTunnels() {
		var code int
		svc, code = startIKE(cfg, *ikeSocket, inline.NewRegistrar(d.Cache(), d.Program()), cacheCounters(d.Cache()), d.ReloadPolicy, log, stderr)
		if svc == nil {
			d.Close()
			return code
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			stopIKE(svc, log)
			d.Close()
			fmt.Fprintf(stderr, "espy run: metrics: %v\n", err)
			return exitStart
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info().Str("listen", ln.Addr().String()).Msg("metrics served")
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	reload := policyReloader(ctx, cfg, d, svc, log)
	code := exitOK
	for done := false; !done; {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if err := out.Reopen(); err != nil {
					log.Error().Err(err).Msg("reopen verdict log")
				} else {
					log.Info().Msg("verdict log reopened")
				}
				reload()
				continue
			}
			log.Info().Str("signal", s.String()).Msg("stopping")
			cancel()
			if err := <-runErr; err != nil {
				log.Error().Err(err).Msg("run")
				code = 1
			}
			done = true
		case err := <-runErr:
			if err != nil {
				log.Error().Err(err).Msg("run")
			}
			code = 1
			done = true
		}
	}
	// Before the detach: Child SAs are unregistered while the fast path's
	// maps are still open.
	stopIKE(svc, log)
	if err := d.Close(); err != nil {
		log.Error().Err(err).Msg("detach")
		code = 1
	}
	return code
}

// ikeStopWait bounds how long espy run waits for peers to acknowledge the
// Delete of their IKE SAs when it stops.
const ikeStopWait = 5 * time.Second

// startIKE starts the IKE daemon; on failure it returns nil and the exit
// code, having reported the error.
func startIKE(cfg *config.Config, socket string, reg ike.SARegistrar, counters func(ike.SAInfo) (uint64, uint64, bool), publish func(*policy.Policy) error, log zerolog.Logger, stderr io.Writer) (*ikeservice.Service, int) {
	var pol *policy.Policy
	if cfg.Policy.Kind != 0 {
		// Tunnels named by PROTECT rules narrow through the SPD.
		var err error
		if pol, err = policy.LoadFile(cfg.File()); err != nil {
			fmt.Fprintf(stderr, "espy run: %v\n", err)
			return nil, exitUsage
		}
	}
	var ikeLog *slog.Logger
	if log.GetLevel() <= zerolog.DebugLevel {
		ikeLog = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "ike")
	}
	svc, err := ikeservice.Start(ikeservice.Options{Config: cfg, Registrar: reg, Counters: counters,
		Log:    zerolog.New(stderr).Level(log.GetLevel()).With().Timestamp().Str("component", "espy-ike").Logger(),
		IKELog: ikeLog, Socket: socket, Policy: pol, PublishPolicy: publish})
	if err != nil {
		fmt.Fprintf(stderr, "espy run: %v\n", err)
		if errors.Is(err, config.ErrInvalid) {
			return nil, exitUsage
		}
		return nil, exitStart
	}
	return svc, exitOK
}

// stopIKE deletes every IKE SA, waiting at most ikeStopWait for the peers.
func stopIKE(svc *ikeservice.Service, log zerolog.Logger) {
	if svc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ikeStopWait)
	defer cancel()
	if err := svc.Close(ctx); err != nil {
		log.Warn().Err(err).Msg("stop IKE")
	}
}

// reloadWait bounds a policy reload's rekeys and deletes of Child SAs.
const reloadWait = 5 * time.Minute

// policyReloader returns the SIGHUP action for the policy section: a
// reload through the IKE service when one runs (it publishes to the fast
// path too, then checks its Child SAs), else straight to the fast path.
// Reloads run one at a time outside the signal loop, so that a stop signal
// is not held up by rekeys; SIGHUPs during one coalesce into one more.
// Without a policy section at start there is nothing to reload.
func policyReloader(ctx context.Context, cfg *config.Config, d *inline.Daemon, svc *ikeservice.Service, log zerolog.Logger) func() {
	if cfg.Policy.Kind == 0 {
		return func() {}
	}
	pending := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-pending:
			case <-ctx.Done():
				return
			}
			if svc != nil {
				rctx, cancel := context.WithTimeout(ctx, reloadWait)
				// The service logs the outcome and each Child SA decision.
				svc.ReloadPolicy(rctx)
				cancel()
				continue
			}
			pol, err := policy.LoadFile(cfg.File())
			if err == nil {
				err = d.ReloadPolicy(pol)
			}
			if err != nil {
				log.Error().Err(err).Msg("policy reload rejected; the previous policy stays")
				continue
			}
			log.Info().Int("rules", len(pol.Rules)).Msg("policy reloaded")
		}
	}()
	return func() {
		select {
		case pending <- struct{}{}:
		default:
		}
	}
}

// cacheCounters reads a Child SA direction's counters from the flow table.
func cacheCounters(c *flowcache.Cache) func(ike.SAInfo) (uint64, uint64, bool) {
	return func(i ike.SAInfo) (uint64, uint64, bool) {
		f, ok := c.Lookup(flowcache.NewKey(i.Src, i.Dst, i.SPI))
		return f.Packets, f.Bytes, ok
	}
}

// runIKEOnly runs the IKE daemon without a fast path until SIGINT or
// SIGTERM.
func runIKEOnly(cfg *config.Config, socket string, log zerolog.Logger, stderr io.Writer) int {
	sigs := make(chan os.Signal, 4)
	// SIGHUP too: its default action would end the process without
	// deleting the SAs, and there is no verdict log to reopen.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	svc, code := startIKE(cfg, socket, nil, nil, nil, log, stderr)
	if svc == nil {
		return code
	}
	log.Info().Int("tunnels", len(cfg.Tunnels)).Msg("espy running (IKE only)")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := policyReloader(ctx, cfg, nil, svc, log)
	s := <-sigs
	for ; s == syscall.SIGHUP; s = <-sigs {
		reload()
	}
	cancel()
	log.Info().Str("signal", s.String()).Msg("stopping")
	stopIKE(svc, log)
	return exitOK
}
