package ikecmd

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/espy-dpi/espy/esptun"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/xfrm"
)

// dpOptions are the data-plane flags.
type dpOptions struct {
	kind    string // none, tun, xfrm, auto
	tunName string
	tunAddr string
	tunMTU  int
}

func (d *dpOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&d.kind, "dataplane", "none", "carry the Child SAs' traffic: none (negotiate only), tun (userspace ESP over a TUN device), xfrm (the kernel's IPsec; needs a kernel with ESP), auto (xfrm where the kernel has ESP, else tun)")
	fs.StringVar(&d.tunName, "tun-name", esptun.DefaultName, "TUN device of -dataplane tun")
	fs.StringVar(&d.tunAddr, "tun-addr", "", "addresses of the TUN device, comma-separated prefixes (tunnel mode: our inner address, e.g. 198.51.100.1/32)")
	fs.IntVar(&d.tunMTU, "tun-mtu", esptun.DefaultMTU, "MTU of the TUN device")
}

// start opens the data plane chosen by the flags, hooks it into cfg and
// reports the choice; the returned function closes it and reports its
// counters.
func (d *dpOptions) start(ep *ike.Endpoint, cfg *ike.Config, out *jsonOut) (func(), error) {
	kesp := esptun.KernelESP()
	reason := ""
	switch d.kind {
	case "none":
		// Negotiation only, as before data planes existed: no event.
		return func() {}, nil
	case "tun", "xfrm":
	case "auto":
		reason = "kernel without ESP (CONFIG_INET_ESP)"
		if kesp {
			reason = "kernel with ESP"
		}
	default:
		return nil, fmt.Errorf("-dataplane %q: want none, tun, xfrm or auto", d.kind)
	}
	if d.kind == "xfrm" || d.kind == "auto" && kesp {
		dp, err := xfrm.Open(xfrm.Config{Endpoint: ep, Logger: cfg.Logger})
		if err == nil {
			return startXFRM(dp, cfg, out, kesp, reason), nil
		}
		if d.kind == "xfrm" {
			return nil, err
		}
		reason = fmt.Sprintf("kernel with ESP, but %v", err)
	}
	var addrs []netip.Prefix
	if d.tunAddr != "" {
		for _, f := range strings.Split(d.tunAddr, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("-tun-addr: %w", err)
			}
			addrs = append(addrs, p)
		}
	}
	dp, err := esptun.Open(esptun.Config{Name: d.tunName, MTU: d.tunMTU, Addrs: addrs, Endpoint: ep, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	cfg.Registrar = ike.WithDataPlane(cfg.Registrar, dp)
	ev := map[string]any{"event": "dataplane", "kind": "tun", "device": dp.Name(), "mtu": dp.MTU(), "kernel_esp": kesp, "desc": dp.String()}
	if reason != "" {
		ev["reason"] = reason
	}
	out.emit(ev)
	return func() {
		st := dp.Status()
		dp.Close()
		// Deleted SAs count too: the initiator deletes its SA before this.
		pkts := [2]uint64{st.RemovedOut.Packets, st.RemovedIn.Packets}
		auth := st.RemovedIn.AuthFailures
		replay := st.RemovedIn.ReplayDrops
		for _, s := range st.SAs {
			if s.Inbound {
				pkts[1] += s.Counters.Packets
			} else {
				pkts[0] += s.Counters.Packets
			}
			auth += s.Counters.AuthFailures
			replay += s.Counters.ReplayDrops
		}
		out.emit(map[string]any{"event": "dataplane_status", "packets_out": pkts[0], "packets_in": pkts[1], "auth_failures": auth,
			"replay_drops": replay, "no_sa": st.NoSA, "unknown_spi": st.UnknownSPI, "selector_drops": st.SelectorDrops})
	}, nil
}

// startXFRM hooks the kernel's data plane into cfg and reports it, as
// start does for tun; the kernel counts per SA only.
func startXFRM(dp *xfrm.DataPlane, cfg *ike.Config, out *jsonOut, kesp bool, reason string) func() {
	cfg.Registrar = ike.WithDataPlane(cfg.Registrar, dp)
	ev := map[string]any{"event": "dataplane", "kind": "xfrm", "kernel_esp": kesp, "desc": dp.String()}
	if reason != "" {
		ev["reason"] = reason
	}
	out.emit(ev)
	return func() {
		// Close reads every SA's counters before deleting it.
		dp.Close()
		o, i := dp.Removed()
		out.emit(map[string]any{"event": "dataplane_status", "packets_out": o.Packets, "packets_in": i.Packets,
			"auth_failures": i.IntegrityFailures, "replay_drops": i.ReplayDrops})
	}
}
