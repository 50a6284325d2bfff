package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// IKE is the ike: section: where espy run's IKE daemon listens, where its
// control socket is, and how it protects itself and retransmits.
type IKE struct {
	Listen          []string   `yaml:"listen"`   // addresses; empty: all IPv4 addresses
	Port            *int       `yaml:"port"`     // default 500; 0: the kernel picks
	NATPort         *int       `yaml:"nat_port"` // default 4500; 0: the kernel picks
	Socket          string     `yaml:"socket"`   // control socket; default DefaultSocket
	CookieThreshold int        `yaml:"cookie_threshold"`
	AlwaysCookie    bool       `yaml:"always_cookie"`
	MaxHalfOpen     int        `yaml:"max_half_open"`
	HalfOpenTimeout Duration   `yaml:"half_open_timeout"`
	Retransmit      Retransmit `yaml:"retransmit"`
	// DataPlane carries the Child SAs' traffic: none (default), tun or
	// auto (see DataPlaneKind).
	DataPlane string   `yaml:"dataplane"`
	TunName   string   `yaml:"tun_name"`  // default esptun.DefaultName
	TunMTU    int      `yaml:"tun_mtu"`   // default esptun.DefaultMTU
	TunAddrs  []string `yaml:"tun_addrs"` // prefixes: this host's inner addresses
}

// Retransmit is the IKE request retransmission schedule (ike.Retransmit).
type Retransmit struct {
	Timeout Duration `yaml:"timeout"` // default 4s
	Base    float64  `yaml:"base"`    // default 1.8
	Tries   *int     `yaml:"tries"`   // default 5
	Limit   Duration `yaml:"limit"`   // cap on one interval; 0: none
}

// Tunnel is one entry of the tunnels: section as written.
type Tunnel struct {
	Name          string     `yaml:"name"`
	LocalAddr     string     `yaml:"local_addr"`
	RemoteAddr    string     `yaml:"remote_addr"`
	RemotePort    int        `yaml:"remote_port"`
	RemoteNATPort int        `yaml:"remote_nat_port"`
	LocalID       string     `yaml:"local_id"`
	RemoteID      string     `yaml:"remote_id"`
	Auth          TunnelAuth `yaml:"auth"`
	IKE           []string   `yaml:"ike"`
	ESP           []string   `yaml:"esp"`
	LocalTS       []string   `yaml:"local_ts"`
	RemoteTS      []string   `yaml:"remote_ts"`
	Mode          string     `yaml:"mode"`  // tunnel (default), transport
	Encap         bool       `yaml:"encap"` // force UDP encapsulation
	DPD           Duration   `yaml:"dpd"`
	StartAction   string     `yaml:"start_action"`
	AllowWeak     bool       `yaml:"allow_weak"`
	// Lifetimes in strongSwan's names (swanctl.conf). Absent: the stack's
	// default; 0: off. Pointers tell the two apart.
	RekeyTime    *Duration `yaml:"rekey_time"` // Child SA
	LifeTime     *Duration `yaml:"life_time"`  // Child SA
	RandTime     *Duration `yaml:"rand_time"`  // Child SA
	IKERekeyTime *Duration `yaml:"ike_rekey_time"`
	ReauthTime   *Duration `yaml:"reauth_time"`
	OverTime     *Duration `yaml:"over_time"`
	IKERandTime  *Duration `yaml:"ike_rand_time"`
	// Child SA volume limits (strongSwan's names), counted by the
	// userspace data plane; absent or 0: off.
	RekeyBytes   Volume `yaml:"rekey_bytes"`
	LifeBytes    Volume `yaml:"life_bytes"`
	RandBytes    Volume `yaml:"rand_bytes"`
	RekeyPackets Volume `yaml:"rekey_packets"`
	LifePackets  Volume `yaml:"life_packets"`
	RandPackets  Volume `yaml:"rand_packets"`
}

// TunnelAuth names a tunnel's credentials. Secrets never appear in the
// file itself: PSK is only a field so that an inline key gets a clear
// error instead of "field not found".
type TunnelAuth struct {
	PSK     string `yaml:"psk"`
	PSKFile string `yaml:"psk_file"`
	PSKEnv  string `yaml:"psk_env"`
	Cert    string `yaml:"cert"` // PEM chain, leaf first
	Key     string `yaml:"key"`  // PEM private key of Cert
	CA      string `yaml:"ca"`   // PEM CAs the peer's certificate must chain to
	// Chains are further certificate chains, sent instead of Cert when
	// the peer's CERTREQ names a CA of theirs (a chain file may end with
	// its root for that).
	Chains []TunnelChain `yaml:"chains"`
	// SignatureAuth is auto (default), rfc7427 or legacy
	// (ike.SignatureAuth); AllowSHA1 permits RSA AUTH with SHA-1.
	SignatureAuth string `yaml:"signature_auth"`
	AllowSHA1     bool   `yaml:"allow_sha1"`
}

// TunnelChain is one further certificate chain and its key.
type TunnelChain struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// signatureAuths maps signature_auth values to ike's policies.
var signatureAuths = map[string]ike.SignatureAuth{"": ike.SignatureAuthAuto, "auto": ike.SignatureAuthAuto, "rfc7427": ike.SignatureAuthRFC7427, "legacy": ike.SignatureAuthLegacy}

// DefaultSocket is the control socket of espy run's IKE daemon.
const DefaultSocket = "/run/espy/ike.sock"

// StartAction says what espy run does with a tunnel when it starts.
type StartAction uint8

// Start actions.
const (
	// StartRespond answers the peer's IKE_SA_INIT (the default).
	StartRespond StartAction = iota
	// StartNone neither answers nor initiates; "espy ike initiate NAME"
	// brings the tunnel up once.
	StartNone
	// StartStart answers, initiates at start, and initiates again with
	// back-off whenever the IKE SA fails or is deleted, until "espy ike
	// terminate NAME".
	StartStart
)

// String returns the action as written in the file.
func (a StartAction) String() string {
	switch a {
	case StartNone:
		return "none"
	case StartStart:
		return "start"
	}
	return "respond"
}

// IKESpec is the validated ike: section.
type IKESpec struct {
	Listen          []netip.Addr // at least one; the zero Addr: all IPv4 addresses
	Port, NATPort   uint16
	Socket          string
	CookieThreshold int
	AlwaysCookie    bool
	MaxHalfOpen     int
	HalfOpenTimeout time.Duration
	Retransmit      ike.Retransmit
	DataPlane       DataPlaneSpec
}

// TunnelSpec is a validated tunnel. Credentials are loaded separately, by
// Credentials, when the daemon starts.
type TunnelSpec struct {
	Name                      string
	Local, Remote             netip.Addr // Remote invalid: any peer (respond only)
	RemotePort, RemoteNATPort uint16
	LocalID, RemoteID         ike.Identity // RemoteID empty: any
	IKE, ESP                  []ike.Proposal
	LocalTS, RemoteTS         []netip.Prefix
	Mode                      ike.Mode
	Encap                     bool
	DPD                       time.Duration
	Lifetimes                 Lifetimes
	Start                     StartAction
	AllowWeak                 bool
}

// maxTunnels bounds the tunnels: section.
const maxTunnels = 1024

// validateIKE checks the ike: and tunnels: sections.
func (c *Config) validateIKE() error {
	if _, err := c.IKESpec(); err != nil {
		return err
	}
	if len(c.Tunnels) > maxTunnels {
		return c.fail("tunnels", "at most %d tunnels, got %d", maxTunnels, len(c.Tunnels))
	}
	seen := map[string]int{}
	for i := range c.Tunnels {
		t, err := c.Tunnel(i)
		if err != nil {
			return err
		}
		if j, dup := seen[t.Name]; dup {
			return c.fail(fmt.Sprintf("tunnels.%d.name", i), "tunnel name %q is already used on line %d", t.Name, c.lines[fmt.Sprintf("tunnels.%d.name", j)])
		}
		seen[t.Name] = i
	}
	return nil
}

// IKESpec returns the ike: section, validated, with defaults filled in.
func (c *Config) IKESpec() (IKESpec, error) {
	k := c.IKE
	s := IKESpec{Port: ike.DefaultPort, NATPort: ike.DefaultNATPort, Socket: DefaultSocket,
		AlwaysCookie: k.AlwaysCookie, HalfOpenTimeout: time.Duration(k.HalfOpenTimeout)}
	for i, a := range k.Listen {
		addr, err := netip.ParseAddr(a)
		if err != nil || addr.Zone() != "" {
			return s, c.fail("ike.listen."+strconv.Itoa(i), "invalid listen address %q", a)
		}
		s.Listen = append(s.Listen, addr)
	}
	if len(s.Listen) == 0 {
		s.Listen = []netip.Addr{{}}
	}
	for _, p := range []struct {
		path string
		v    *int
		dst  *uint16
	}{{"ike.port", k.Port, &s.Port}, {"ike.nat_port", k.NATPort, &s.NATPort}} {
		if p.v == nil {
			continue
		}
		if *p.v < 0 || *p.v > 65535 {
			return s, c.fail(p.path, "port %d out of range (0 to 65535; 0: any free port)", *p.v)
		}
		*p.dst = uint16(*p.v)
	}
	if s.Port != 0 && s.Port == s.NATPort {
		return s, c.fail("ike.nat_port", "nat_port must differ from port %d", s.Port)
	}
	if k.Socket != "" {
		// sun_path holds 108 bytes with the terminating NUL.
		if len(k.Socket) > 107 || !filepath.IsAbs(k.Socket) {
			return s, c.fail("ike.socket", "socket must be an absolute path of at most 107 bytes, got %q", k.Socket)
		}
		s.Socket = k.Socket
	}
	for _, f := range []struct {
		path string
		v    int
		dst  *int
	}{{"ike.cookie_threshold", k.CookieThreshold, &s.CookieThreshold}, {"ike.max_half_open", k.MaxHalfOpen, &s.MaxHalfOpen}} {
		if f.v < 0 || f.v > ike.MaxSAs {
			return s, c.fail(f.path, "%d is out of range (0 to %d)", f.v, ike.MaxSAs)
		}
		*f.dst = f.v
	}
	r := k.Retransmit
	s.Retransmit = ike.DefaultRetransmit
	if r.Timeout != 0 {
		s.Retransmit.Timeout = time.Duration(r.Timeout)
	}
	if r.Base != 0 {
		if r.Base < 1 || r.Base > 10 {
			return s, c.fail("ike.retransmit.base", "base must be between 1 and 10, got %v", r.Base)
		}
		s.Retransmit.Base = r.Base
	}
	if r.Tries != nil {
		if *r.Tries < 0 || *r.Tries > 20 {
			return s, c.fail("ike.retransmit.tries", "tries must be between 0 and 20, got %d", *r.Tries)
		}
		s.Retransmit.Tries = *r.Tries
	}
	s.Retransmit.Limit = time.Duration(r.Limit)
	dp, err := c.dataPlane(len(s.Listen))
	s.DataPlane = dp
	return s, err
}

// Tunnel returns tunnels[i], validated, with defaults filled in.
func (c *Config) Tunnel(i int) (TunnelSpec, error) {
	t := c.Tunnels[i]
	p := "tunnels." + strconv.Itoa(i)
	s := TunnelSpec{Name: t.Name, Encap: t.Encap, AllowWeak: t.AllowWeak, DPD: time.Duration(t.DPD)}
	if !validName(t.Name) {
		return s, c.fail(p+".name", "tunnel name %q must be 1 to 64 letters, digits, '.', '_' or '-', and not an IP address", t.Name)
	}
	var err error
	if t.LocalAddr != "" {
		if s.Local, err = netip.ParseAddr(t.LocalAddr); err != nil || s.Local.Zone() != "" {
			return s, c.fail(p+".local_addr", "invalid address %q", t.LocalAddr)
		}
	}
	if t.RemoteAddr != "" {
		if s.Remote, err = netip.ParseAddr(t.RemoteAddr); err != nil || s.Remote.Zone() != "" || s.Remote.IsUnspecified() {
			return s, c.fail(p+".remote_addr", "invalid address %q", t.RemoteAddr)
		}
	}
	if s.Local.IsValid() && s.Remote.IsValid() && s.Local.Is4() != s.Remote.Is4() {
		return s, c.fail(p, "local_addr and remote_addr are of different IP versions")
	}
	s.RemotePort, s.RemoteNATPort = ike.DefaultPort, ike.DefaultNATPort
	for _, f := range []struct {
		name string
		v    int
		dst  *uint16
	}{{"remote_port", t.RemotePort, &s.RemotePort}, {"remote_nat_port", t.RemoteNATPort, &s.RemoteNATPort}} {
		if f.v < 0 || f.v > 65535 {
			return s, c.fail(p+"."+f.name, "port %d out of range", f.v)
		}
		if f.v != 0 {
			*f.dst = uint16(f.v)
		}
	}
	switch {
	case t.LocalID != "":
		if s.LocalID, err = ParseIdentity(t.LocalID); err != nil {
			return s, c.fail(p+".local_id", "%v", err)
		}
	case s.Local.IsValid() && !s.Local.IsUnspecified():
		s.LocalID = ike.AddrIdentity(s.Local)
	default:
		return s, c.fail(p, "tunnel %q needs local_id (or local_addr, used as an address identity)", t.Name)
	}
	if t.RemoteID != "" {
		if s.RemoteID, err = ParseIdentity(t.RemoteID); err != nil {
			return s, c.fail(p+".remote_id", "%v", err)
		}
	}
	if err := c.checkAuth(p+".auth", t.Auth); err != nil {
		return s, err
	}
	if s.IKE, err = c.proposals(p+".ike", t.IKE, true, t.AllowWeak); err != nil {
		return s, err
	}
	if s.ESP, err = c.proposals(p+".esp", t.ESP, false, t.AllowWeak); err != nil {
		return s, err
	}
	if s.LocalTS, err = c.prefixes(p+".local_ts", t.LocalTS); err != nil {
		return s, err
	}
	if s.RemoteTS, err = c.prefixes(p+".remote_ts", t.RemoteTS); err != nil {
		return s, err
	}
	switch t.Mode {
	case "", "tunnel":
	case "transport":
		s.Mode = ike.ModeTransport
	default:
		return s, c.fail(p+".mode", "mode must be tunnel or transport, got %q", t.Mode)
	}
	switch t.StartAction {
	case "", "respond":
	case "none":
		s.Start = StartNone
	case "start":
		s.Start = StartStart
		if !s.Remote.IsValid() {
			return s, c.fail(p+".start_action", "start_action start needs remote_addr")
		}
	default:
		return s, c.fail(p+".start_action", "start_action must be none, start or respond, got %q", t.StartAction)
	}
	if s.Lifetimes, err = c.lifetimes(p, t); err != nil {
		return s, err
	}
	return s, nil
}

// validName accepts tunnel names; never an IP address, which "espy ike
// initiate" reads as the standalone initiator's peer.
func validName(s string) bool {
	if _, err := netip.ParseAddr(s); s == "" || len(s) > 64 || err == nil {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ParseIdentity reads an identity as strongSwan writes it: an IP address
// (ID_IPV4_ADDR, ID_IPV6_ADDR), user@domain (ID_RFC822_ADDR), @name or a
// plain name (ID_FQDN).
func ParseIdentity(s string) (ike.Identity, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return ike.AddrIdentity(a), nil
	}
	if len(s) > 255 || strings.ContainsAny(s, " \t\r\n") {
		return ike.Identity{}, fmt.Errorf("identity %q: at most 255 bytes, no spaces", s)
	}
	name := strings.TrimPrefix(s, "@")
	if name == "" {
		return ike.Identity{}, fmt.Errorf("identity %q is empty", s)
	}
	if i := strings.IndexByte(name, '@'); i >= 0 && !strings.HasPrefix(s, "@") {
		if i == 0 || i == len(name)-1 || strings.Count(name, "@") != 1 {
			return ike.Identity{}, fmt.Errorf("identity %q: want user@domain", s)
		}
		return ike.Identity{Type: message.IDRFC822Addr, Data: []byte(name)}, nil
	}
	if strings.Contains(name, "@") {
		return ike.Identity{}, fmt.Errorf("identity %q: '@' inside a name", s)
	}
	return ike.FQDN(name), nil
}

// checkAuth requires a way to authenticate ourselves (PSK or certificate
// and key) and a way to verify the peer (PSK or CA).
func (c *Config) checkAuth(p string, a TunnelAuth) error {
	if a.PSK != "" {
		return c.fail(p+".psk", "inline pre-shared keys are refused (they end up in backups and logs): use psk_file or psk_env")
	}
	if a.PSKFile != "" && a.PSKEnv != "" {
		return c.fail(p+".psk_env", "give psk_file or psk_env, not both")
	}
	if a.PSKEnv != "" && (strings.ContainsAny(a.PSKEnv, "= \t") || len(a.PSKEnv) > 128) {
		return c.fail(p+".psk_env", "invalid environment variable name %q", a.PSKEnv)
	}
	psk := a.PSKFile != "" || a.PSKEnv != ""
	if (a.Cert == "") != (a.Key == "") {
		if a.Cert == "" {
			return c.fail(p+".key", "key without cert")
		}
		return c.fail(p+".cert", "cert without key")
	}
	if !psk && a.Cert == "" {
		return c.fail(p, "no credentials: give psk_file or psk_env, or cert, key and ca")
	}
	if !psk && a.CA == "" {
		return c.fail(p, "no way to verify the peer: give ca (or a pre-shared key)")
	}
	for i, ch := range a.Chains {
		if ch.Cert == "" || ch.Key == "" {
			return c.fail(p+".chains."+strconv.Itoa(i), "a chain needs cert and key")
		}
	}
	if _, ok := signatureAuths[a.SignatureAuth]; !ok {
		return c.fail(p+".signature_auth", "signature_auth %q: give auto, rfc7427 or legacy", a.SignatureAuth)
	}
	return nil
}

// proposals parses a list of strongSwan-notation proposals and applies the
// stack's checks, so a typo or a forbidden algorithm fails at load.
func (c *Config) proposals(p string, list []string, ikeSA, weak bool) ([]ike.Proposal, error) {
	what := "esp"
	if ikeSA {
		what = "ike"
	}
	if len(list) == 0 {
		return nil, c.fail(p, "%s proposals are required, e.g. %s", what, map[bool]string{true: "[aes128gcm16-prfsha256-x25519]", false: "[null-sha256]"}[ikeSA])
	}
	if len(list) > 255 {
		return nil, c.fail(p, "at most 255 %s proposals, got %d", what, len(list))
	}
	out := make([]ike.Proposal, 0, len(list))
	for i, s := range list {
		prop, err := ike.ParseProposal(s, ikeSA)
		if err == nil {
			err = ike.CheckProposal(prop, ikeSA, weak)
		}
		if err != nil {
			return nil, c.fail(p+"."+strconv.Itoa(i), "%s proposal %q: %v", what, s, err)
		}
		out = append(out, prop)
	}
	return out, nil
}

// prefixes reads traffic selectors written as prefixes or addresses.
func (c *Config) prefixes(p string, list []string) ([]netip.Prefix, error) {
	if len(list) > 64 {
		return nil, c.fail(p, "at most 64 traffic selectors, got %d", len(list))
	}
	var out []netip.Prefix
	for i, s := range list {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, c.fail(p+"."+strconv.Itoa(i), "invalid traffic selector %q (want a prefix such as 198.51.100.0/24 or an address)", s)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// HasTunnels reports whether the file configures the IKE daemon.
func (c *Config) HasTunnels() bool { return len(c.Tunnels) > 0 }
