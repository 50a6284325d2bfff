package ikecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/ikebench"
)

const benchUsage = `usage: espy ike bench [flags] TARGET-ADDRESS

Establishes IKE SAs (IKE_SA_INIT + IKE_AUTH with a pre-shared key, one
Child SA each) against the responder at TARGET-ADDRESS as fast as it
answers, with at most -init-limit handshakes in flight, then prints the
failures by reason and one summary line:

ikebench: target=A:P established=N failed=F retransmits=R seconds=S rate=X p50_ms=L p99_ms=L cpu_us_per_sa=C reuse_ke=K

where C is this process's (the initiator's) CPU time per established SA
and K the number of SAs each initiator Diffie-Hellman key pair served (1:
a fresh one per SA). By default the initiator reuses its key pair (RFC
7296 2.12) for -reuse-ke-sas SAs or -reuse-ke-age, whichever ends first,
so that it loads the responder instead of spending its CPU on its own key
generation; the responder still makes a key pair per SA. -reuse-ke=false
turns that off.

The pre-shared key is read from -psk-file or the ESPY_IKE_PSK variable.

flags:
`

// bench runs "espy ike bench".
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("espy ike bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	var (
		listen, localID, remoteID, pskFile string
		ikeProps, espProps, deleteMode     string
		localTS, remoteTS                  string
		port, rPort, rNAT                  uint
		cfg                                ikebench.Config
		reuseKE                            bool
	)
	fs.StringVar(&listen, "listen", "", "local address (default: all IPv4 addresses)")
	fs.UintVar(&port, "port", 0, "first local IKE port; -sockets IKE ports, then as many NAT-T ports, follow (0: the kernel picks)")
	fs.IntVar(&cfg.Sockets, "sockets", 1, "initiator socket pairs to spread the SAs over")
	fs.UintVar(&rPort, "remote-port", ike.DefaultPort, "target's IKE port")
	fs.UintVar(&rNAT, "remote-nat-port", ike.DefaultNATPort, "target's NAT-T port")
	fs.IntVar(&cfg.Count, "count", 1000, "IKE SAs to establish (0: until -duration ends)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop starting handshakes after this long (0: until -count)")
	fs.IntVar(&cfg.InitLimit, "init-limit", 32, "handshakes in flight at most (strongSwan load-tester's init_limit)")
	fs.IntVar(&cfg.InitLimit, "concurrency", 32, "same as -init-limit")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "give up a handshake after this long (0: the retransmission schedule, about 165 s)")
	fs.StringVar(&ikeProps, "ike", "aes128gcm16-prfsha256-x25519", "IKE proposals, comma-separated, strongSwan notation")
	fs.StringVar(&espProps, "esp", "aes128gcm16", "ESP proposals, comma-separated (charon's kernel-libipsec takes aes128gcm16 and null-sha256)")
	fs.StringVar(&localID, "local-id", "bench-%d.example", "our identity; %d becomes the SA's number, so each SA has its own")
	fs.StringVar(&remoteID, "remote-id", "", "the identity the target must prove (default: any)")
	fs.StringVar(&pskFile, "psk-file", "", "file holding the pre-shared key (default: $ESPY_IKE_PSK)")
	fs.StringVar(&localTS, "local-ts", "", "our traffic selectors, comma-separated prefixes (default: our address)")
	fs.StringVar(&remoteTS, "remote-ts", "", "the target's traffic selectors (default: its address)")
	fs.BoolVar(&cfg.Encap, "encap", false, "force UDP encapsulation: IKE_AUTH on the NAT-T port")
	fs.StringVar(&deleteMode, "delete", "each", "when to delete the SAs: each (right after each is up, timed) or end (all after the measurement, untimed)")
	fs.BoolVar(&reuseKE, "reuse-ke", true, "reuse the initiator's Diffie-Hellman key pair across SAs (RFC 7296 2.12): load generation only, it gives up forward secrecy between those SAs")
	fs.IntVar(&cfg.ReuseKE, "reuse-ke-sas", 1000, "with -reuse-ke: SAs per key pair at most")
	fs.DurationVar(&cfg.ReuseKEAge, "reuse-ke-age", time.Minute, "with -reuse-ke: age of a key pair at most (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	err := func() error {
		if fs.NArg() != 1 {
			return errors.New("bench needs the target's address")
		}
		a, err := netip.ParseAddr(fs.Arg(0))
		if err != nil {
			return fmt.Errorf("target address: %w", err)
		}
		cfg.Target = netip.AddrPortFrom(a, uint16(rPort))
		cfg.TargetNATPort = uint16(rNAT)
		cfg.BasePort = uint16(port)
		if listen != "" {
			if cfg.Local, err = netip.ParseAddr(listen); err != nil {
				return fmt.Errorf("-listen: %w", err)
			}
		}
		cfg.PSK = []byte(os.Getenv("ESPY_IKE_PSK"))
		if pskFile != "" {
			b, err := os.ReadFile(pskFile)
			if err != nil {
				return fmt.Errorf("-psk-file: %w", err)
			}
			cfg.PSK = []byte(strings.TrimRight(string(b), "\r\n"))
		}
		cfg.LocalID = localID
		if !reuseKE {
			cfg.ReuseKE = 0
		}
		if remoteID != "" {
			cfg.RemoteID = identity(remoteID)
		}
		if cfg.Delete, err = ikebench.ParseDeleteMode(deleteMode); err != nil {
			return err
		}
		for _, s := range strings.Split(ikeProps, ",") {
			p, err := ike.ParseProposal(strings.TrimSpace(s), true)
			if err != nil {
				return err
			}
			cfg.IKE = append(cfg.IKE, p)
		}
		for _, s := range strings.Split(espProps, ",") {
			p, err := ike.ParseProposal(strings.TrimSpace(s), false)
			if err != nil {
				return err
			}
			cfg.ESP = append(cfg.ESP, p)
		}
		if cfg.LocalTS, err = selectors(localTS); err != nil {
			return fmt.Errorf("-local-ts: %w", err)
		}
		if cfg.RemoteTS, err = selectors(remoteTS); err != nil {
			return fmt.Errorf("-remote-ts: %w", err)
		}
		if os.Getenv("GOGC") == "" {
			// The live heap of a load generator is small and its garbage
			// large: collect less often than GOGC=100 would (a quarter of
			// the initiator's CPU went to GC), so that more of it goes to
			// handshakes.
			debug.SetGCPercent(400)
		}
		r, err := ikebench.Run(ctx, cfg)
		if err != nil {
			return err
		}
		reasons := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			reasons = append(reasons, k)
		}
		slices.Sort(reasons)
		for _, k := range reasons {
			fmt.Fprintf(stdout, "failed: %s %d\n", k, r.Failures[k])
		}
		fmt.Fprintf(stdout, "deleted: %d\n", r.Deleted)
		fmt.Fprintf(stdout, "established %d IKE SAs in %v (%.1f/s), %d failed, %d retransmits, latency p50 %v p99 %v, initiator CPU %v per SA, initiator key pair reused for up to %d SAs\n",
			r.Established, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Failed, r.Retransmits, r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.CPUPerSA(), r.ReuseKE)
		fmt.Fprintln(stdout, r.Line())
		return nil
	}()
	if err != nil {
		fmt.Fprintf(stderr, "espy ike bench: %v\n", err)
		return 1
	}
	return 0
}
