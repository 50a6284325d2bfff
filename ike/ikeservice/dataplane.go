package ikeservice

import (
	"fmt"
	"log/slog"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/esptun"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/xfrm"
)

// dataPlane is what the service needs of an open data plane: espy's
// userspace ESP (tunDataPlane) or the kernel's XFRM (xfrmDataPlane).
// Both embed the real one, so ike.WithDataPlane still finds its
// ike.LimitReporter.
type dataPlane interface {
	ike.DataPlane
	Close() error
	// sas fills in the totals of st (when not nil) and returns the
	// counters of the installed SA directions.
	sas(st *DataPlaneStatus) map[childKey]dpSA
}

// openDataPlane opens the data plane the ike: section asks for, on ep's
// NAT-T socket, and says which one it is and why; dp is nil for none.
func openDataPlane(spec config.DataPlaneSpec, ep *ike.Endpoint, log *slog.Logger) (dataPlane, DataPlaneStatus, error) {
	kesp := esptun.KernelESP()
	st := DataPlaneStatus{Kind: "none", KernelESP: kesp,
		Reason: "ike.dataplane none: Child SAs are negotiated and inspected, their traffic is carried elsewhere"}
	switch spec.Kind {
	case config.DataPlaneNone:
		return nil, st, nil
	case config.DataPlaneXFRM:
		st.Reason = "ike.dataplane xfrm"
		return openXFRM(ep, log, st)
	case config.DataPlaneTUN:
		st.Reason = "ike.dataplane tun"
	case config.DataPlaneAuto:
		if kesp {
			st.Reason = "ike.dataplane auto: kernel with ESP"
			dp, xst, err := openXFRM(ep, log, st)
			if err == nil {
				return dp, xst, nil
			}
			st.Reason = fmt.Sprintf("ike.dataplane auto: kernel with ESP, but %v", err)
		} else {
			st.Reason = "ike.dataplane auto: kernel without ESP (CONFIG_INET_ESP)"
		}
	default:
		return nil, st, fmt.Errorf("ikeservice: data plane kind %v", spec.Kind)
	}
	dp, err := esptun.Open(esptun.Config{Name: spec.TunName, MTU: spec.TunMTU, Addrs: spec.TunAddrs, Endpoint: ep, Logger: log})
	if err != nil {
		return nil, st, fmt.Errorf("ikeservice: data plane (%s): %w", st.Reason, err)
	}
	st.Kind, st.Device, st.MTU = "tun", dp.Name(), dp.MTU()
	return tunDataPlane{dp}, st, nil
}

func openXFRM(ep *ike.Endpoint, log *slog.Logger, st DataPlaneStatus) (dataPlane, DataPlaneStatus, error) {
	dp, err := xfrm.Open(xfrm.Config{Endpoint: ep, Logger: log})
	if err != nil {
		return nil, st, fmt.Errorf("ikeservice: data plane (%s): %w", st.Reason, err)
	}
	st.Kind = "xfrm"
	return xfrmDataPlane{dp}, st, nil
}

// dpSA is the data plane's view of one installed SA direction.
type dpSA struct {
	c      esp.Counters
	active bool
}

// tunDataPlane is esptun's data plane.
type tunDataPlane struct{ *esptun.DataPlane }

func (d tunDataPlane) sas(st *DataPlaneStatus) map[childKey]dpSA {
	ds := d.Status()
	if st != nil {
		st.NoSA, st.UnknownSPI, st.SelectorDrops, st.SendErrors, st.TunWriteErrors = ds.NoSA, ds.UnknownSPI, ds.SelectorDrops, ds.SendErrors, ds.TunWriteErrors
	}
	m := make(map[childKey]dpSA, len(ds.SAs))
	for _, sa := range ds.SAs {
		// Outbound SPIs are chosen by the peers and could repeat across
		// peers; the first (newest) wins, which status can live with.
		k := childKey{sa.SPI, sa.Inbound}
		if _, dup := m[k]; !dup {
			m[k] = dpSA{c: sa.Counters, active: sa.Active}
		}
	}
	return m
}

// xfrmDataPlane is the kernel's, with the counters the kernel keeps per
// SA (no totals: its drops outside SAs are in /proc/net/xfrm_stat).
type xfrmDataPlane struct{ *xfrm.DataPlane }

func (d xfrmDataPlane) sas(*DataPlaneStatus) map[childKey]dpSA {
	ss := d.Status()
	m := make(map[childKey]dpSA, len(ss))
	for _, s := range ss {
		if s.Err != nil {
			continue // gone, e.g. after its hard limit
		}
		// The kernel picks the newest outbound SA of a pair by itself.
		m[childKey{s.SPI, s.Inbound}] = dpSA{c: esp.Counters{Packets: s.State.Packets, Bytes: s.State.Bytes,
			ReplayDrops: uint64(s.State.ReplayDrops), AuthFailures: uint64(s.State.IntegrityFailures)}, active: true}
	}
	return m
}

// dataPlaneSAs snapshots the data plane's SAs, keyed like the tunnels'
// Child SA directions, and fills in the totals of st; nil without a data
// plane.
func (s *Service) dataPlaneSAs(st *DataPlaneStatus) map[childKey]dpSA {
	if s.dp == nil {
		return nil
	}
	return s.dp.sas(st)
}

// childDataPlane returns the data plane counters of the Child SA with
// inbound SPI in and outbound SPI out, or nil if neither is installed.
func childDataPlane(m map[childKey]dpSA, in, out uint32) *ChildDataPlaneStatus {
	i, okIn := m[childKey{in, true}]
	o, okOut := m[childKey{out, false}]
	if !okIn && !okOut {
		return nil
	}
	return &ChildDataPlaneStatus{
		PacketsIn: i.c.Packets, BytesIn: i.c.Bytes, PacketsOut: o.c.Packets, BytesOut: o.c.Bytes,
		AuthFailures: i.c.AuthFailures, ReplayDrops: i.c.ReplayDrops, OtherDrops: i.c.OtherDrops,
		Installed: okIn && okOut, Active: o.active,
	}
}
