package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

func TestExampleTunnels(t *testing.T) {
	c, err := Load("../docs/espy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.IKESpec()
	if err != nil || s.Port != 500 || s.NATPort != 4500 || s.Socket != DefaultSocket || s.Listen[0] != netip.MustParseAddr("192.0.2.1") ||
		s.Retransmit != ike.DefaultRetransmit || s.HalfOpenTimeout != 30*time.Second {
		t.Errorf("ike: %+v %v", s, err)
	}
	tn, err := c.Tunnel(0)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Name != "site-b" || tn.Remote != netip.MustParseAddr("192.0.2.2") || tn.RemotePort != 500 || tn.LocalID.String() != "a.lab.example" ||
		len(tn.IKE) != 2 || len(tn.ESP) != 2 || tn.LocalTS[0] != netip.MustParsePrefix("198.51.100.0/24") || tn.Start != StartStart ||
		tn.DPD != 30*time.Second || tn.RekeyTime != time.Hour || tn.Mode != ike.ModeTunnel {
		t.Errorf("tunnel 0: %+v", tn)
	}
	if tn, err := c.Tunnel(1); err != nil || tn.Remote.IsValid() || tn.Start != StartRespond || tn.RemoteID.Type != 0 {
		t.Errorf("tunnel 1: %+v %v", tn, err)
	}
}

func TestIKEDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte("tunnels:\n  - {name: t, local_addr: 192.0.2.1, auth: {psk_env: K}, ike: [aes128gcm16-prfsha256-x25519], esp: [null-sha256]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.IKESpec()
	if len(s.Listen) != 1 || s.Listen[0].IsValid() || s.Port != 500 || s.NATPort != 4500 {
		t.Errorf("defaults: %+v", s)
	}
	tn, _ := c.Tunnel(0)
	if tn.LocalID.Type != message.IDIPv4Addr || tn.Start != StartRespond || tn.RemoteNATPort != 4500 {
		t.Errorf("tunnel defaults: %+v", tn)
	}
	c, err = Parse("t.yaml", []byte("ike: {port: 0, nat_port: 0}\n"))
	if s, _ := c.IKESpec(); err != nil || s.Port != 0 || s.NATPort != 0 {
		t.Errorf("explicit 0 ports: %+v %v", s, err)
	}
}

func TestParseIdentity(t *testing.T) {
	for _, tt := range []struct {
		in   string
		typ  message.IDType
		data string
	}{
		{"a.lab.example", message.IDFQDN, "a.lab.example"},
		{"@a.lab.example", message.IDFQDN, "a.lab.example"},
		{"ops@lab.example", message.IDRFC822Addr, "ops@lab.example"},
		{"192.0.2.1", message.IDIPv4Addr, "\xc0\x00\x02\x01"},
		{"2001:db8::1", message.IDIPv6Addr, string(netip.MustParseAddr("2001:db8::1").AsSlice())},
	} {
		id, err := ParseIdentity(tt.in)
		if err != nil || id.Type != tt.typ || string(id.Data) != tt.data {
			t.Errorf("%q: %+v %v", tt.in, id, err)
		}
	}
	for _, bad := range []string{"", "@", "a b", "@x@y", "a@", "@a@b"} {
		if _, err := ParseIdentity(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// tunnelYAML is a valid tunnel with line numbers 1-8; tests replace lines.
const tunnelYAML = `tunnels:
  - name: t1
    remote_addr: 192.0.2.2
    local_id: a.lab.example
    auth: {psk_file: /etc/espy/t1.psk}
    ike: [aes128gcm16-prfsha256-x25519]
    esp: [null-sha256]
    start_action: start
`

func TestBadTunnels(t *testing.T) {
	with := func(old, new string) string {
		if !strings.Contains(tunnelYAML, old) {
			t.Fatalf("%q not in the template", old)
		}
		return strings.Replace(tunnelYAML, old, new, 1)
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"name", with("name: t1", "name: 'a b'"), "bad.yaml:2: tunnel name \"a b\" must be"},
		{"name is an address", with("name: t1", "name: 192.0.2.9"), "bad.yaml:2: tunnel name \"192.0.2.9\""},
		{"duplicate name", tunnelYAML + strings.TrimPrefix(tunnelYAML, "tunnels:\n"), "bad.yaml:9: tunnel name \"t1\" is already used on line 2"},
		{"remote address", with("192.0.2.2", "192.0.2.256"), "bad.yaml:3: invalid address"},
		{"families", with("remote_addr: 192.0.2.2", "remote_addr: 192.0.2.2\n    local_addr: 2001:db8::1"), "bad.yaml:2: local_addr and remote_addr are of different IP versions"},
		{"remote port", with("remote_addr: 192.0.2.2", "remote_addr: 192.0.2.2\n    remote_port: 70000"), "bad.yaml:4: port 70000 out of range"},
		{"no local id", with("    local_id: a.lab.example\n", ""), "bad.yaml:2: tunnel \"t1\" needs local_id"},
		{"local id", with("local_id: a.lab.example", "local_id: 'a b'"), "bad.yaml:4: identity \"a b\""},
		{"inline psk", with("{psk_file: /etc/espy/t1.psk}", "{psk: hunter2}"), "bad.yaml:5: inline pre-shared keys are refused"},
		{"two psks", with("{psk_file: /etc/espy/t1.psk}", "{psk_file: /k, psk_env: K}"), "bad.yaml:5: give psk_file or psk_env, not both"},
		{"no credentials", with("{psk_file: /etc/espy/t1.psk}", "{}"), "bad.yaml:5: no credentials"},
		{"cert without key", with("{psk_file: /etc/espy/t1.psk}", "{cert: /c.pem, ca: /ca.pem}"), "bad.yaml:5: cert without key"},
		{"cert without ca", with("{psk_file: /etc/espy/t1.psk}", "{cert: /c.pem, key: /k.pem}"), "bad.yaml:5: no way to verify the peer"},
		{"no ike", with("    ike: [aes128gcm16-prfsha256-x25519]\n", ""), "bad.yaml:2: ike proposals are required"},
		{"ike typo", with("ike: [aes128gcm16-prfsha256-x25519]", "ike: [aes128gcm16-prfsha256-x2551]"), "bad.yaml:6: ike proposal \"aes128gcm16-prfsha256-x2551\""},
		{"ike without group", with("ike: [aes128gcm16-prfsha256-x25519]", "ike: [aes128gcm16-prfsha256]"), "bad.yaml:6: ike proposal \"aes128gcm16-prfsha256\": ike: invalid configuration: IKE proposal needs a PRF and a key exchange group"},
		{"esp null alone", with("esp: [null-sha256]", "esp:\n      - null-sha256\n      - 'null'"), "bad.yaml:9: esp proposal \"null\""},
		{"weak", with("ike: [aes128gcm16-prfsha256-x25519]", "ike: [aes128-sha1-modp1024]"), "bad.yaml:6: ike proposal \"aes128-sha1-modp1024\""},
		{"ts", with("esp: [null-sha256]", "esp: [null-sha256]\n    local_ts: [198.51.100.0/33]"), "bad.yaml:8: invalid traffic selector"},
		{"mode", with("start_action: start", "mode: tunel"), "bad.yaml:8: mode must be tunnel or transport"},
		{"start action", with("start_action: start", "start_action: go"), "bad.yaml:8: start_action must be none, start or respond"},
		{"start without remote", with("    remote_addr: 192.0.2.2\n", ""), "bad.yaml:7: start_action start needs remote_addr"},
		{"dpd", with("start_action: start", "dpd: often"), "bad.yaml:8: invalid duration"},
		{"unknown key", with("start_action: start", "start_actoin: start"), "bad.yaml:8: field start_actoin not found"},
		{"listen", "ike:\n  listen: [192.0.2.1, localhost]\n", "bad.yaml:2: invalid listen address \"localhost\""},
		{"port", "ike:\n  port: 65536\n", "bad.yaml:2: port 65536 out of range"},
		{"same ports", "ike:\n  port: 4500\n", "bad.yaml:1: nat_port must differ from port 4500"},
		{"socket", "ike:\n  socket: run/ike.sock\n", "bad.yaml:2: socket must be an absolute path"},
		{"half open", "ike:\n  max_half_open: -1\n", "bad.yaml:2: -1 is out of range"},
		{"retransmit base", "ike:\n  retransmit:\n    base: 0.5\n", "bad.yaml:3: base must be between 1 and 10"},
		{"retransmit tries", "ike:\n  retransmit: {tries: 99}\n", "bad.yaml:2: tries must be between 0 and 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tt.want)
			}
		})
	}
	if _, err := Parse("good.yaml", []byte(tunnelYAML)); err != nil {
		t.Fatalf("the template itself: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	if err := os.WriteFile(psk, []byte("s3cret-for-tests\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(auth string) (Credentials, error) {
		c, err := Parse("c.yaml", []byte(strings.Replace(tunnelYAML, "{psk_file: /etc/espy/t1.psk}", auth, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return c.Credentials(0)
	}
	if cr, err := load("{psk_file: " + psk + "}"); err != nil || string(cr.PSK) != "s3cret-for-tests" {
		t.Errorf("psk_file: %q %v", cr.PSK, err)
	}
	t.Setenv("ESPY_CONFIG_TEST_PSK", "from-env")
	if cr, err := load("{psk_env: ESPY_CONFIG_TEST_PSK}"); err != nil || string(cr.PSK) != "from-env" {
		t.Errorf("psk_env: %q %v", cr.PSK, err)
	}
	for _, tt := range []struct{ auth, want string }{
		{"{psk_file: " + filepath.Join(dir, "missing") + "}", "c.yaml:5: pre-shared key: open"},
		{"{psk_env: ESPY_CONFIG_TEST_UNSET}", "c.yaml:5: environment variable ESPY_CONFIG_TEST_UNSET is not set"},
		{"{cert: " + psk + ", key: " + psk + ", ca: " + psk + "}", "c.yaml:5: no PEM certificate in"},
	} {
		_, err := load(tt.auth)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want %q and no secret", tt.auth, err, tt.want)
		}
	}
}
