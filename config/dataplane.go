package config

import (
	"net/netip"
	"strconv"
	"strings"
)

// DataPlaneKind says what carries the traffic of the Child SAs espy run
// negotiates (ike.dataplane).
type DataPlaneKind uint8

// Data plane kinds.
const (
	// DataPlaneNone negotiates and inspects only: the ESP is carried by
	// whatever else the host or the path has (the default, as before the
	// key existed).
	DataPlaneNone DataPlaneKind = iota
	// DataPlaneTUN carries it with espy's userspace ESP over a TUN device
	// (package esptun).
	DataPlaneTUN
	// DataPlaneAuto picks kernel XFRM where the kernel has ESP, else TUN,
	// and reports why.
	DataPlaneAuto
	// DataPlaneXFRM carries it in the kernel's IPsec (package xfrm),
	// which needs a kernel with ESP.
	DataPlaneXFRM
)

// String returns the kind as written in the file.
func (k DataPlaneKind) String() string {
	switch k {
	case DataPlaneTUN:
		return "tun"
	case DataPlaneAuto:
		return "auto"
	case DataPlaneXFRM:
		return "xfrm"
	}
	return "none"
}

// DataPlaneSpec is the validated data plane of the ike: section.
type DataPlaneSpec struct {
	Kind DataPlaneKind
	// TUN device name and MTU; "" and 0 mean esptun's defaults.
	TunName string
	TunMTU  int
	// TunAddrs are the device's addresses (address and prefix length, not
	// masked): this host's inner addresses in tunnel mode.
	TunAddrs []netip.Prefix
}

// TUN MTU bounds, as esptun.Open checks them: IPv4's minimum datagram, and
// 64 KiB less the largest ESP overhead.
const (
	minTunMTU = 576
	maxTunMTU = 65535 - 121
)

// dataPlane validates ike.dataplane and its tun_ keys; listeners is the
// number of IKE endpoints.
func (c *Config) dataPlane(listeners int) (DataPlaneSpec, error) {
	k := c.IKE
	var s DataPlaneSpec
	switch k.DataPlane {
	case "", "none":
	case "tun":
		s.Kind = DataPlaneTUN
	case "auto":
		s.Kind = DataPlaneAuto
	case "xfrm":
		s.Kind = DataPlaneXFRM
	default:
		return s, c.fail("ike.dataplane", "dataplane must be none, tun, xfrm or auto, got %q", k.DataPlane)
	}
	if s.Kind == DataPlaneNone || s.Kind == DataPlaneXFRM {
		// Keys that would do nothing are a mistake worth reporting.
		// (xfrm has no device: the kernel's policies route the traffic.)
		for _, f := range []struct {
			key string
			set bool
		}{{"tun_name", k.TunName != ""}, {"tun_mtu", k.TunMTU != 0}, {"tun_addrs", len(k.TunAddrs) != 0}} {
			if f.set {
				return s, c.fail("ike."+f.key, "%s needs dataplane: tun or auto", f.key)
			}
		}
		if s.Kind == DataPlaneNone {
			return s, nil
		}
	}
	if listeners > 1 {
		// esptun carries ESP-in-UDP on one endpoint's NAT-T socket; the
		// XFRM data plane prepares one endpoint's sockets (UDP_ENCAP,
		// policy bypass) too.
		return s, c.fail("ike.dataplane", "dataplane %s needs exactly one listen address (the data plane sends and receives ESP-in-UDP on one NAT-T socket), got %d", k.DataPlane, listeners)
	}
	if k.TunName != "" {
		// IFNAMSIZ is 16 with the NUL; '/' and whitespace are refused by
		// the kernel's dev_valid_name.
		if len(k.TunName) > 15 || k.TunName == "." || k.TunName == ".." || strings.ContainsAny(k.TunName, "/: \t\n") {
			return s, c.fail("ike.tun_name", "invalid interface name %q (at most 15 bytes, no '/', ':' or spaces)", k.TunName)
		}
		s.TunName = k.TunName
	}
	if k.TunMTU != 0 {
		if k.TunMTU < minTunMTU || k.TunMTU > maxTunMTU {
			return s, c.fail("ike.tun_mtu", "tun_mtu %d out of range (%d to %d)", k.TunMTU, minTunMTU, maxTunMTU)
		}
		s.TunMTU = k.TunMTU
	}
	if len(k.TunAddrs) > 64 {
		return s, c.fail("ike.tun_addrs", "at most 64 addresses, got %d", len(k.TunAddrs))
	}
	for i, a := range k.TunAddrs {
		p, err := netip.ParsePrefix(a)
		if err != nil || p.Addr().Zone() != "" {
			return s, c.fail("ike.tun_addrs."+strconv.Itoa(i), "invalid address %q (want address/length, e.g. 198.51.100.1/32)", a)
		}
		s.TunAddrs = append(s.TunAddrs, p)
	}
	return s, nil
}
