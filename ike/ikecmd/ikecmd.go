// Package ikecmd is the "espy ike" command: it runs espy's IKEv2 stack as
// initiator or responder with a pre-shared key and prints every Child SA it
// registers as a JSON line.
package ikecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

const usage = `usage: espy ike initiate [flags] REMOTE-ADDRESS
       espy ike respond [flags]
       espy ike bench [flags] TARGET-ADDRESS   (a load generator; see espy ike bench -h)

Runs espy's IKEv2 stack (PSK authentication) and prints one JSON line per
event: "listening", "established" (an IKE SA, with its peer and
algorithms), "sa_registered" and "sa_unregistered" (one per Child SA
direction, with its exact algorithms), "error".
The pre-shared key is read from -psk-file or the ESPY_IKE_PSK variable;
with -cert/-key a side signs instead, with -ca it requires a certificate.

flags:
`

// Main runs "espy ike" with args (without the "ike" word) until it is
// interrupted (SIGINT/SIGTERM) or, with -once, until the first Child SA is
// up. It returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, stdout, stderr)
}

type options struct {
	listen, localID, remoteID, pskFile string
	certFile, keyFile, caFile          string
	dpd                                time.Duration
	childRekey                         time.Duration
	ikeProps, espProps                 string
	localTS, remoteTS                  string
	port, natPort, remotePort, rNAT    uint
	transport, encap, once, verbose    bool
	timeout                            time.Duration
	cookieThreshold, maxHalfOpen       int
	quiet                              bool
	dp                                 dpOptions
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "bench" {
		return bench(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 {
		if code, ok := controlMain(ctx, args, stdout, stderr); ok {
			return code
		}
	}
	if len(args) == 0 || (args[0] != "initiate" && args[0] != "respond") {
		fmt.Fprint(stderr, usage+"\n"+controlUsage)
		return 2
	}
	mode := args[0]
	fs := flag.NewFlagSet("espy ike "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var o options
	fs.StringVar(&o.listen, "listen", "", "local address (default: all IPv4 addresses)")
	fs.UintVar(&o.port, "port", ike.DefaultPort, "local IKE port (0: any)")
	fs.UintVar(&o.natPort, "nat-port", ike.DefaultNATPort, "local NAT-T port (0: any)")
	fs.UintVar(&o.remotePort, "remote-port", ike.DefaultPort, "peer's IKE port (initiate)")
	fs.UintVar(&o.rNAT, "remote-nat-port", ike.DefaultNATPort, "peer's NAT-T port")
	fs.StringVar(&o.localID, "local-id", "", "our identity: an FQDN or an IP address (required)")
	fs.StringVar(&o.remoteID, "remote-id", "", "the identity the peer must prove (default: any)")
	fs.StringVar(&o.pskFile, "psk-file", "", "file holding the pre-shared key (default: $ESPY_IKE_PSK)")
	fs.StringVar(&o.certFile, "cert", "", "PEM certificate chain, leaf first: authenticate with it (RFC 7427) instead of the PSK")
	fs.StringVar(&o.keyFile, "key", "", "PEM private key (PKCS#8, SEC 1 or PKCS#1) of -cert")
	fs.StringVar(&o.caFile, "ca", "", "PEM CA certificates: require the peer to authenticate with a certificate from them")
	fs.DurationVar(&o.dpd, "dpd", 0, "check every interval that the peer is alive (0: never)")
	fs.DurationVar(&o.childRekey, "child-rekey", 0, "rekey each Child SA this long after it is set up (0: 1h; negative: leave it to the peer); -esp groups such as aes128gcm16-x25519 add PFS")
	fs.StringVar(&o.ikeProps, "ike", "aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048", "IKE proposals, comma-separated, strongSwan notation")
	fs.StringVar(&o.espProps, "esp", "aes128gcm16,null-sha256", "ESP proposals, comma-separated")
	fs.StringVar(&o.localTS, "local-ts", "", "our traffic selectors, comma-separated prefixes (default: our address)")
	fs.StringVar(&o.remoteTS, "remote-ts", "", "the peer's traffic selectors (default: its address)")
	fs.BoolVar(&o.transport, "transport", false, "ask for transport mode")
	fs.BoolVar(&o.encap, "encap", false, "force UDP encapsulation (initiate)")
	fs.BoolVar(&o.once, "once", false, "exit (deleting the SA) once the first Child SA is up")
	fs.BoolVar(&o.verbose, "v", false, "log protocol events to stderr")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up initiating after this long (0: the retransmission schedule)")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the listening and error events (benchmarks)")
	fs.IntVar(&o.cookieThreshold, "cookie-threshold", ike.DefaultCookieThreshold, "half-open IKE SAs from which cookies are demanded (respond)")
	fs.IntVar(&o.maxHalfOpen, "max-half-open", ike.DefaultMaxHalfOpen, "half-open IKE SAs beyond which IKE_SA_INIT requests are dropped (respond)")
	o.dp.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	out := newJSONOut(stdout)
	out.quiet = o.quiet
	if err := execute(ctx, mode, fs.Args(), &o, out, stderr); err != nil {
		out.emit(map[string]any{"event": "error", "error": err.Error()})
		fmt.Fprintf(stderr, "espy ike: %v\n", err)
		return 1
	}
	return 0
}

func execute(ctx context.Context, mode string, rest []string, o *options, out *jsonOut, stderr io.Writer) error {
	cfg, err := o.config(out, stderr)
	if err != nil {
		return err
	}
	lc := ike.ListenConfig{Port: uint16(o.port), NATPort: uint16(o.natPort), Logger: cfg.Logger,
		CookieThreshold: o.cookieThreshold, MaxHalfOpen: o.maxHalfOpen}
	if o.listen != "" {
		if lc.Addr, err = netip.ParseAddr(o.listen); err != nil {
			return fmt.Errorf("-listen: %w", err)
		}
	}
	ep, err := ike.Listen(lc)
	if err != nil {
		return err
	}
	defer ep.Close()
	ikeAddr, nattAddr := ep.Addrs()
	out.emit(map[string]any{"event": "listening", "ike": ikeAddr.String(), "natt": nattAddr.String()})
	stopDP, err := o.dp.start(ep, cfg, out)
	if err != nil {
		return err
	}
	defer stopDP()

	switch mode {
	case "respond":
		if len(rest) != 0 {
			return fmt.Errorf("respond takes no arguments")
		}
		if err := ep.Respond(cfg); err != nil {
			return err
		}
		if o.once {
			select {
			case <-out.firstChild():
			case <-ctx.Done():
			}
			return nil
		}
		<-ctx.Done()
		return nil
	default:
		if len(rest) != 1 {
			return fmt.Errorf("initiate needs the peer's address")
		}
		a, err := netip.ParseAddr(rest[0])
		if err != nil {
			return fmt.Errorf("peer address: %w", err)
		}
		ictx := ctx
		if o.timeout > 0 {
			var cancel context.CancelFunc
			ictx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
		}
		sa, err := ep.Initiate(ictx, cfg, netip.AddrPortFrom(a, uint16(o.remotePort)))
		if err != nil {
			return err
		}
		// The Established callback prints asynchronously; wait for it so
		// that the event precedes the deletion.
		select {
		case <-out.up:
		case <-time.After(5 * time.Second):
		}
		if !o.once {
			<-ctx.Done()
		}
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return sa.Delete(dctx)
	}
}

func (o *options) config(out *jsonOut, stderr io.Writer) (*ike.Config, error) {
	psk := []byte(os.Getenv("ESPY_IKE_PSK"))
	if o.pskFile != "" {
		b, err := os.ReadFile(o.pskFile)
		if err != nil {
			return nil, fmt.Errorf("-psk-file: %w", err)
		}
		psk = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if len(psk) == 0 && (o.certFile == "" || o.caFile == "") {
		return nil, errors.New("no pre-shared key: use -psk-file or ESPY_IKE_PSK, or -cert, -key and -ca")
	}
	if o.localID == "" {
		return nil, errors.New("-local-id is required")
	}
	cfg := &ike.Config{LocalID: identity(o.localID), PSK: psk, Registrar: out, ForceEncap: o.encap, RemoteNATPort: uint16(o.rNAT), DPDInterval: o.dpd, ChildRekeyTime: o.childRekey,
		Established: out.established}
	if err := o.credentials(cfg); err != nil {
		return nil, err
	}
	if o.remoteID != "" {
		cfg.RemoteID = identity(o.remoteID)
	}
	if o.transport {
		cfg.Mode = ike.ModeTransport
	}
	for _, s := range strings.Split(o.ikeProps, ",") {
		p, err := ike.ParseProposal(strings.TrimSpace(s), true)
		if err != nil {
			return nil, err
		}
		cfg.IKE = append(cfg.IKE, p)
	}
	for _, s := range strings.Split(o.espProps, ",") {
		p, err := ike.ParseProposal(strings.TrimSpace(s), false)
		if err != nil {
			return nil, err
		}
		cfg.ESP = append(cfg.ESP, p)
	}
	var err error
	if cfg.LocalTS, err = selectors(o.localTS); err != nil {
		return nil, fmt.Errorf("-local-ts: %w", err)
	}
	if cfg.RemoteTS, err = selectors(o.remoteTS); err != nil {
		return nil, fmt.Errorf("-remote-ts: %w", err)
	}
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg, nil
}

// credentials loads -cert, -key and -ca into cfg.
func (o *options) credentials(cfg *ike.Config) error {
	if o.certFile != "" {
		certs, err := config.ReadCertificates(o.certFile)
		if err != nil {
			return fmt.Errorf("-cert: %w", err)
		}
		cfg.Certificates = certs
		if o.keyFile == "" {
			return errors.New("-cert needs -key")
		}
		if cfg.PrivateKey, err = config.ReadPrivateKey(o.keyFile); err != nil {
			return fmt.Errorf("-key: %w", err)
		}
	}
	if o.caFile != "" {
		cas, err := config.ReadCertificates(o.caFile)
		if err != nil {
			return fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = cas
	}
	return nil
}

// identity reads an IP address as an address identity, anything else as
// an FQDN.
func identity(s string) ike.Identity {
	if a, err := netip.ParseAddr(s); err == nil {
		return ike.AddrIdentity(a)
	}
	return ike.FQDN(s)
}

func selectors(s string) ([]message.Selector, error) {
	if s == "" {
		return nil, nil
	}
	var out []message.Selector
	for _, f := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, ike.PrefixSelector(p))
	}
	return out, nil
}

// jsonOut prints events as JSON lines and implements ike.SARegistrar.
type jsonOut struct {
	mu        sync.Mutex
	w         io.Writer
	first     chan struct{} // closed when the first Child SA is registered
	firstOnce sync.Once
	// up is closed when the first IKE SA is established (printed).
	up              chan struct{}
	establishedOnce sync.Once
	// quiet drops every event but "listening" and "error".
	quiet bool
}

func newJSONOut(w io.Writer) *jsonOut {
	return &jsonOut{w: w, first: make(chan struct{}), up: make(chan struct{})}
}

func (j *jsonOut) emit(v map[string]any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(v)
	j.w.Write(append(b, '\n'))
}

func (j *jsonOut) firstChild() <-chan struct{} { return j.first }

func saJSON(event string, i ike.SAInfo) map[string]any {
	m := map[string]any{
		"event": event, "src": i.Src.String(), "dst": i.Dst.String(), "spi": fmt.Sprintf("%08x", i.SPI),
		"inbound": i.Inbound, "encap": i.Encap.String(), "null": i.Null, "iv_len": i.IVLen, "icv_len": i.ICVLen,
		"esn": i.ESN, "mode": i.Mode.String(), "encr_id": i.EncrID, "integ_id": i.IntegID,
	}
	if e, err := ikecrypto.LookupEncr(i.EncrID); err == nil {
		m["encr"] = e.Name
	}
	if i.EncrKeyBits != 0 {
		m["encr_key_bits"] = i.EncrKeyBits
	}
	if in, err := ikecrypto.LookupInteg(i.IntegID); err == nil {
		m["integ"] = in.Name
	}
	if i.Encap == ike.EncapUDP {
		m["sport"], m["dport"] = i.SrcPort, i.DstPort
	}
	return m
}

// established prints an IKE SA that completed IKE_AUTH.
func (j *jsonOut) established(sa *ike.IKESA) {
	if j.quiet {
		j.establishedOnce.Do(func() { close(j.up) })
		return
	}
	spiI, spiR := sa.SPIs()
	local, remote, natt := sa.Addrs()
	s := sa.Suite()
	m := map[string]any{"event": "established", "spi_i": fmt.Sprintf("%016x", spiI), "spi_r": fmt.Sprintf("%016x", spiR),
		"peer_id": sa.PeerID().String(), "local": local.String(), "remote": remote.String(), "natt": natt,
		"encr_id": s.Encr.ID, "prf_id": s.PRF, "integ_id": s.Integ, "dh_group": s.DH}
	if s.Encr.KeyBits != 0 {
		m["encr_key_bits"] = s.Encr.KeyBits
	}
	j.emit(m)
	j.establishedOnce.Do(func() { close(j.up) })
}

// RegisterSA implements ike.SARegistrar by printing the SA.
func (j *jsonOut) RegisterSA(i ike.SAInfo) error {
	if !j.quiet {
		j.emit(saJSON("sa_registered", i))
	}
	if i.Inbound {
		j.firstOnce.Do(func() { close(j.first) })
	}
	return nil
}

// UnregisterSA implements ike.SARegistrar.
func (j *jsonOut) UnregisterSA(i ike.SAInfo) {
	if !j.quiet {
		j.emit(saJSON("sa_unregistered", i))
	}
}
