// Package ikebench is an IKEv2 load generator: it establishes many IKE SAs
// (IKE_SA_INIT + IKE_AUTH with a pre-shared key and one Child SA each)
// against one responder with espy's own initiator, keeping a bounded
// number of handshakes in flight (like strongSwan load-tester's
// init_limit), and reports the rate, failures, retransmits and latency.
package ikebench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// DeleteMode says when the load generator deletes the IKE SAs it made.
type DeleteMode uint8

// Delete modes.
const (
	// DeleteAtEnd keeps every IKE SA until the measurement is over, then
	// deletes them all (untimed): the responder holds at most Count SAs,
	// and the rate counts IKE_SA_INIT + IKE_AUTH only.
	DeleteAtEnd DeleteMode = iota
	// DeleteEach deletes each IKE SA as soon as it is up, inside the
	// measured time (an INFORMATIONAL exchange per SA more).
	DeleteEach
)

// ParseDeleteMode reads "end" or "each". (There is no "never": closing
// the initiator's endpoints tells the peer about every SA anyway.)
func ParseDeleteMode(s string) (DeleteMode, error) {
	switch s {
	case "end":
		return DeleteAtEnd, nil
	case "each":
		return DeleteEach, nil
	}
	return 0, fmt.Errorf("ikebench: delete mode %q: want end or each", s)
}

// ErrConfig means an unusable benchmark configuration.
var ErrConfig = errors.New("ikebench: invalid configuration")

// Config describes one benchmark run.
type Config struct {
	Target        netip.AddrPort // the responder's IKE address and port
	TargetNATPort uint16         // its NAT-T port; 0: 4500
	Local         netip.Addr     // local address; invalid: all IPv4 addresses
	Sockets       int            // initiator endpoints (socket pairs) the load is spread over; 0: 1
	BasePort      uint16         // first local IKE port (NAT-T ports follow the IKE ones); 0: the kernel picks

	Count     int           // IKE SAs to establish; 0: until Duration ends
	Duration  time.Duration // stop starting handshakes after this long; 0: until Count
	InitLimit int           // handshakes in flight at most; 0: 1
	Timeout   time.Duration // per handshake; 0: the retransmission schedule

	IKE, ESP []ike.Proposal
	PSK      []byte
	// LocalID names the initiator; a %d in it is replaced by the SA's
	// sequence number, giving each IKE SA its own identity (so that
	// INITIAL_CONTACT never makes the responder drop the others).
	LocalID  string
	RemoteID ike.Identity // the responder's identity; empty: any
	LocalTS  []message.Selector
	RemoteTS []message.Selector
	Encap    bool // force UDP encapsulation (IKE_AUTH on the NAT-T port)
	Delete   DeleteMode
	// Retransmit is the request schedule; zero: ike.DefaultRetransmit.
	Retransmit ike.Retransmit
	// ReuseKE, when above 1, makes the initiator reuse each Diffie-Hellman
	// key pair for up to that many IKE SAs (RFC 7296 2.12, through an
	// ike.KeyShareCache), and for at most ReuseKEAge if that is positive,
	// so that its CPU goes to loading the responder rather than to its own
	// key generation. The responder still makes a key pair and computes
	// the shared secret for every SA. 0 or 1: a fresh key pair each.
	ReuseKE    int
	ReuseKEAge time.Duration
}

// Result is what a run measured.
type Result struct {
	Target      netip.AddrPort
	Established int
	Failed      int
	Failures    map[string]int // by reason
	Retransmits uint64
	Elapsed     time.Duration // from the first handshake started to the last one finished
	P50, P99    time.Duration // handshake latency of the established SAs
	Deleted     int           // SAs deleted with an acknowledged INFORMATIONAL exchange
	// CPU is the CPU time (user and system) this process spent during
	// the measurement: the initiator's cost.
	CPU time.Duration
	// ReuseKE is Config.ReuseKE as used: SAs per initiator key pair (1:
	// no reuse), reported so that a figure says how it was measured.
	ReuseKE int
}

// CPUPerSA is the initiator's CPU time per established SA.
func (r *Result) CPUPerSA() time.Duration {
	if r.Established == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Established)
}

// Rate is established IKE SAs per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Established) / r.Elapsed.Seconds()
}

// Line is the fixed machine-readable summary.
func (r *Result) Line() string {
	return fmt.Sprintf("ikebench: target=%s established=%d failed=%d retransmits=%d seconds=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f cpu_us_per_sa=%d reuse_ke=%d",
		r.Target, r.Established, r.Failed, r.Retransmits, r.Elapsed.Seconds(), r.Rate(),
		float64(r.P50)/float64(time.Millisecond), float64(r.P99)/float64(time.Millisecond), r.CPUPerSA().Microseconds(), max(r.ReuseKE, 1))
}

// maxSamples bounds the latency samples kept (a long -duration run).
const maxSamples = 1 << 20

// Run runs the benchmark until Count SAs were attempted, Duration is over
// or ctx ends, then deletes the SAs as cfg.Delete says.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	eps, err := cfg.listen()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, ep := range eps {
			ep.Close()
		}
	}()
	base := cfg.initiator()

	var (
		next     atomic.Int64 // sequence number of the next handshake
		mu       sync.Mutex
		failures = map[string]int{}
		lat      []time.Duration
		up       []*ike.IKESA
		deleted  atomic.Int64
		lastDone atomic.Int64 // UnixNano of the last finished handshake
	)
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range max(cfg.InitLimit, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				n := next.Add(1) - 1
				if cfg.Count > 0 && n >= int64(cfg.Count) {
					return
				}
				c := *base
				c.LocalID = localID(cfg.LocalID, n)
				hctx, cancel := ctx, context.CancelFunc(func() {})
				if cfg.Timeout > 0 {
					hctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
				}
				t0 := time.Now()
				sa, err := eps[int(n)%len(eps)].Initiate(hctx, &c, cfg.Target)
				d := time.Since(t0)
				cancel()
				lastDone.Store(time.Now().UnixNano())
				mu.Lock()
				if err != nil {
					failures[reason(err)]++
				} else if len(lat) < maxSamples {
					lat = append(lat, d)
				}
				if sa != nil && cfg.Delete == DeleteAtEnd {
					up = append(up, sa)
				}
				mu.Unlock()
				if err != nil && sa == nil {
					continue
				}
				if cfg.Delete == DeleteEach {
					if derr := sa.Delete(ctx); derr == nil {
						deleted.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	r := &Result{Target: cfg.Target, Failures: failures, Elapsed: time.Duration(lastDone.Load() - start.UnixNano()), CPU: processCPU() - cpu0, ReuseKE: max(cfg.ReuseKE, 1)}
	if lastDone.Load() == 0 {
		r.Elapsed = time.Since(start)
	}
	for _, n := range failures {
		r.Failed += n
	}
	r.Established = len(lat)
	slices.Sort(lat)
	r.P50, r.P99 = percentile(lat, 50), percentile(lat, 99)
	for _, ep := range eps {
		r.Retransmits += ep.Stats().Retransmits
	}
	if cfg.Delete == DeleteAtEnd {
		deleteAll(ctx, up, max(cfg.InitLimit, 1), &deleted)
	}
	r.Deleted = int(deleted.Load())
	return r, nil
}

// initiator returns the ike.Config every handshake starts from.
func (cfg *Config) initiator() *ike.Config {
	base := &ike.Config{
		PSK: cfg.PSK, RemoteID: cfg.RemoteID, IKE: cfg.IKE, ESP: cfg.ESP,
		LocalTS: cfg.LocalTS, RemoteTS: cfg.RemoteTS, ForceEncap: cfg.Encap,
		RemoteNATPort: cfg.TargetNATPort, Retransmit: cfg.Retransmit,
		// Forced encapsulation makes the initiator behave as if behind a
		// NAT, which would start a keepalive goroutine and ticker per IKE
		// SA: about 2 % of the load generator's CPU in a profile of
		// -delete each, for keepalives that SAs living milliseconds never
		// send and that no NAT between load generator and responder needs.
		NATKeepalive: -1,
		// Likewise the lifetime timers, three per IKE SA with its Child
		// SA: rekeying is hours away (strongSwan's defaults) and not part
		// of what is measured.
		IKERekeyTime: -1, ChildRekeyTime: -1, ChildLifeTime: -1,
	}
	if base.RemoteNATPort == 0 {
		base.RemoteNATPort = ike.DefaultNATPort
	}
	if base.Retransmit == (ike.Retransmit{}) {
		base.Retransmit = ike.DefaultRetransmit
	}
	if cfg.ReuseKE > 1 {
		base.ReuseKE = ike.NewKeyShareCache(cfg.ReuseKE, cfg.ReuseKEAge)
	}
	return base
}

func (cfg *Config) check() error {
	switch {
	case !cfg.Target.IsValid() || cfg.Target.Port() == 0:
		return fmt.Errorf("%w: target %v", ErrConfig, cfg.Target)
	case cfg.Count <= 0 && cfg.Duration <= 0:
		return fmt.Errorf("%w: need a count or a duration", ErrConfig)
	case cfg.Count < 0 || cfg.InitLimit < 0 || cfg.Sockets < 0 || cfg.ReuseKE < 0 || cfg.ReuseKEAge < 0:
		return fmt.Errorf("%w: negative count, init limit, sockets or key reuse", ErrConfig)
	case len(cfg.PSK) == 0 || cfg.LocalID == "":
		return fmt.Errorf("%w: need a PSK and a local identity", ErrConfig)
	case len(cfg.IKE) == 0 || len(cfg.ESP) == 0:
		return fmt.Errorf("%w: need IKE and ESP proposals", ErrConfig)
	case cfg.BasePort != 0 && int(cfg.BasePort)+2*max(cfg.Sockets, 1) > 65536:
		return fmt.Errorf("%w: %d sockets from port %d", ErrConfig, cfg.Sockets, cfg.BasePort)
	}
	return nil
}

// listen opens the initiator endpoints: IKE ports BasePort, BasePort+1,
// ..., then the NAT-T ports after them.
func (cfg *Config) listen() ([]*ike.Endpoint, error) {
	n := max(cfg.Sockets, 1)
	var eps []*ike.Endpoint
	for i := range n {
		lc := ike.ListenConfig{Addr: cfg.Local}
		if cfg.BasePort != 0 {
			lc.Port = cfg.BasePort + uint16(i)
			lc.NATPort = cfg.BasePort + uint16(n+i)
		}
		ep, err := ike.Listen(lc)
		if err != nil {
			for _, e := range eps {
				e.Close()
			}
			return nil, fmt.Errorf("ikebench: socket %d: %w", i, err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// localID gives handshake n its identity: an IP address literal as an
// address identity, anything else as an FQDN with %d replaced by n.
func localID(pattern string, n int64) ike.Identity {
	if a, err := netip.ParseAddr(pattern); err == nil {
		return ike.AddrIdentity(a)
	}
	for i := 0; i+1 < len(pattern); i++ {
		if pattern[i] == '%' && pattern[i+1] == 'd' {
			// Built in one buffer, the identity's own: this runs for
			// every SA.
			b := make([]byte, 0, len(pattern)+18)
			b = strconv.AppendInt(append(b, pattern[:i]...), n, 10)
			return ike.Identity{Type: message.IDFQDN, Data: append(b, pattern[i+2:]...)}
		}
	}
	return ike.FQDN(pattern)
}

// reason names the class of a handshake failure.
func reason(err error) string {
	var ne *ike.NotifyError
	var oe *net.OpError
	switch {
	case errors.As(err, &ne):
		return ne.Type.String()
	case errors.Is(err, ike.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, ike.ErrAuthentication):
		return "authentication"
	case errors.Is(err, ike.ErrProposal):
		return "proposal"
	case errors.Is(err, ike.ErrProtocol):
		return "protocol"
	case errors.Is(err, ike.ErrBusy):
		return "busy"
	case errors.As(err, &oe):
		return "network"
	}
	return "other"
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// deleteAll deletes sas with up to limit INFORMATIONAL exchanges in flight.
func deleteAll(ctx context.Context, sas []*ike.IKESA, limit int, deleted *atomic.Int64) {
	ch := make(chan *ike.IKESA)
	var wg sync.WaitGroup
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sa := range ch {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if sa.Delete(dctx) == nil {
					deleted.Add(1)
				}
				cancel()
			}
		}()
	}
	for _, sa := range sas {
		ch <- sa
	}
	close(ch)
	wg.Wait()
}
