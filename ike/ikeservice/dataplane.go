package ikeservice

import (
	"fmt"
	"log/slog"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/esptun"
	"github.com/espy-dpi/espy/ike"
)

// openDataPlane opens the data plane the ike: section asks for, on ep's
// NAT-T socket, and says which one it is and why; dp is nil for none.
func openDataPlane(spec config.DataPlaneSpec, ep *ike.Endpoint, log *slog.Logger) (*esptun.DataPlane, DataPlaneStatus, error) {
	kesp := esptun.KernelESP()
	st := DataPlaneStatus{Kind: "none", KernelESP: kesp,
		Reason: "ike.dataplane none: Child SAs are negotiated and inspected, their traffic is carried elsewhere"}
	switch spec.Kind {
	case config.DataPlaneNone:
		return nil, st, nil
	case config.DataPlaneTUN:
		st.Reason = "ike.dataplane tun"
	case config.DataPlaneAuto:
		st.Reason = "ike.dataplane auto: XFRM data plane not implemented"
		if !kesp {
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
	return dp, st, nil
}

// dpSA is the data plane's view of one installed SA direction.
type dpSA struct {
	c      esp.Counters
	active bool
}

// dataPlaneSAs snapshots the data plane's SAs, keyed like the tunnels'
// Child SA directions, and fills in the totals of st; nil without a data
// plane.
func (s *Service) dataPlaneSAs(st *DataPlaneStatus) map[childKey]dpSA {
	if s.dp == nil {
		return nil
	}
	ds := s.dp.Status()
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
