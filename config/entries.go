package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SA is a validated known SA.
type SA struct {
	Src, Dst netip.Addr
	SPI      uint32
	Null     bool
	ICV, IV  uint8
}

// KnownSA returns known_sas[i], validated.
func (c *Config) KnownSA(i int) (SA, error) {
	k := c.KnownSAs[i]
	p := "known_sas." + strconv.Itoa(i)
	var sa SA
	var err error
	if sa.Src, err = netip.ParseAddr(k.Src); err != nil {
		return sa, c.fail(p+".src", "invalid address %q", k.Src)
	}
	if sa.Dst, err = netip.ParseAddr(k.Dst); err != nil {
		return sa, c.fail(p+".dst", "invalid address %q", k.Dst)
	}
	if sa.Src.Is4() != sa.Dst.Is4() {
		return sa, c.fail(p, "src and dst are of different IP versions")
	}
	spi, err := strconv.ParseUint(k.SPI, 0, 32)
	if err != nil || spi < 256 {
		return sa, c.fail(p+".spi", "invalid SPI %q (a number from 256 to 4294967295, decimal or 0x hex; 1-255 are reserved)", k.SPI)
	}
	sa.SPI = uint32(spi)
	// "null" unquoted is YAML's null value: read the text as written.
	switch c.values[p+".encryption"] {
	case "null":
		sa.Null = true
		switch k.ICV {
		case 0, 8, 12, 16, 20, 24, 32:
		default:
			return sa, c.fail(p+".icv", "ICV length %d is not one of 0, 8, 12, 16, 20, 24, 32", k.ICV)
		}
		if k.IV != 0 && k.IV != 8 {
			return sa, c.fail(p+".iv", "IV length %d is not 0 or 8 (ENCR_NULL_AUTH_AES_GMAC)", k.IV)
		}
		sa.ICV, sa.IV = uint8(k.ICV), uint8(k.IV)
	case "encrypted":
	default:
		return sa, c.fail(p+".encryption", "encryption must be null or encrypted, got %q", k.Encryption)
	}
	return sa, nil
}

// Rule is a validated inner rule.
type Rule struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Action           string
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}

// InnerRule returns inner_rules[i], validated.
func (c *Config) InnerRule(i int) (Rule, error) {
	r := c.InnerRules[i]
	p := "inner_rules." + strconv.Itoa(i)
	var out Rule
	if v, ok := protoNames[strings.ToLower(r.Proto)]; ok {
		out.Proto = v
	} else if n, err := strconv.ParseUint(r.Proto, 10, 8); err == nil {
		out.Proto = uint8(n)
	} else {
		return out, c.fail(p+".proto", "unknown protocol %q (tcp, udp, icmp, icmpv6, sctp, gre, or a number)", r.Proto)
	}
	var err error
	if out.Src, err = netip.ParseAddr(r.Src); err != nil {
		return out, c.fail(p+".src", "invalid address %q", r.Src)
	}
	if out.Dst, err = netip.ParseAddr(r.Dst); err != nil {
		return out, c.fail(p+".dst", "invalid address %q", r.Dst)
	}
	if out.Src.Is4() != out.Dst.Is4() {
		return out, c.fail(p, "src and dst are of different IP versions")
	}
	for _, port := range []struct {
		name string
		v    int
	}{{"sport", r.SrcPort}, {"dport", r.DstPort}} {
		if port.v < 0 || port.v > 65535 {
			return out, c.fail(p+"."+port.name, "port %d out of range", port.v)
		}
	}
	switch out.Proto {
	case 6, 17, 132:
	default:
		if r.SrcPort != 0 || r.DstPort != 0 {
			return out, c.fail(p, "protocol %s has no ports", r.Proto)
		}
	}
	out.SrcPort, out.DstPort = uint16(r.SrcPort), uint16(r.DstPort)
	switch r.Action {
	case "allow", "drop", "count":
		out.Action = r.Action
	default:
		return out, c.fail(p+".action", "action must be allow, drop or count, got %q", r.Action)
	}
	return out, nil
}

// Mode is "monitor" with one interface and "bridge" with two.
func (c *Config) Mode() string {
	if len(c.Interfaces) == 2 {
		return "bridge"
	}
	return "monitor"
}

// String describes the configuration in one line, for the start-up log.
func (c *Config) String() string {
	return fmt.Sprintf("%s on %v, fail-%s", c.Mode(), c.Interfaces, orDefault(c.Fail, "open"))
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
