package charonlab

import (
	"fmt"
	"strings"
)

// Conn is a PSK-authenticated connection of swanctl.conf between charon
// (192.0.2.2) and espy (192.0.2.1).
type Conn struct {
	// Name is the connection's name, e.g. toespy.
	Name string
	// Proposals are charon's IKE proposals, comma-separated.
	Proposals string
	// LocalID is charon's identity, b.lab.example when empty; RemoteID is
	// espy's, a.lab.example when empty.
	LocalID, RemoteID string
	// Settings are more connection settings, one a line, e.g.
	// "rekey_time = 5s".
	Settings string
	// Children are the connection's Child SA configurations.
	Children []Child
}

// Child is a children entry of a Conn.
type Child struct {
	// Name is the child's name, for swanctl --initiate --child.
	Name string
	// LocalTS is charon's traffic selector, 203.0.113.1/32 when empty;
	// RemoteTS is espy's, 198.51.100.1/32 when empty.
	LocalTS, RemoteTS string
	// ESP are charon's ESP proposals, comma-separated.
	ESP string
	// Settings are more child settings, one a line, e.g.
	// "rekey_time = 3s".
	Settings string
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// String returns the connection's block, for SwanctlConf.
func (c Conn) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, `  %s {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = %s
%s    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = %s
    }
    children {
`, c.Name, AddrB, AddrA, c.Proposals, indent(c.Settings, 4), or(c.LocalID, "b.lab.example"), or(c.RemoteID, "a.lab.example"))
	for _, ch := range c.Children {
		fmt.Fprintf(&b, `      %s {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
%s      }
`, ch.Name, or(ch.LocalTS, "203.0.113.1/32"), or(ch.RemoteTS, "198.51.100.1/32"), ch.ESP, indent(ch.Settings, 8))
	}
	b.WriteString("    }\n  }\n")
	return b.String()
}

// SwanctlConf returns a swanctl.conf with the connection blocks (Conn's
// String or verbatim ones, e.g. with certificates) and one secret, PSK,
// for the identities ids.
func SwanctlConf(ids []string, blocks ...string) string {
	var b strings.Builder
	b.WriteString("connections {\n")
	for _, c := range blocks {
		b.WriteString(c)
	}
	b.WriteString("}\nsecrets {\n  ike-lab {\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "    id-%c = %s\n", 'a'+i, id)
	}
	fmt.Fprintf(&b, "    secret = %q\n  }\n}\n", PSK)
	return b.String()
}
