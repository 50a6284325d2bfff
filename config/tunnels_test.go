package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
		s.Retransmit != ike.DefaultRetransmit || s.HalfOpenTimeout != 30*time.Second || s.DataPlane.Kind != DataPlaneNone {
		t.Errorf("ike: %+v %v", s, err)
	}
	tn, err := c.Tunnel(0)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Name != "site-b" || tn.Remote != netip.MustParseAddr("192.0.2.2") || tn.RemotePort != 500 || tn.LocalID.String() != "a.lab.example" ||
		len(tn.IKE) != 2 || len(tn.ESP) != 2 || tn.LocalTS[0] != netip.MustParsePrefix("198.51.100.0/24") || tn.Start != StartStart ||
		tn.DPD != 30*time.Second || tn.Lifetimes != (Lifetimes{IKERekey: 4 * time.Hour, IKEReauth: -1, IKEOver: 24 * time.Minute, IKERand: 24 * time.Minute, ChildRekey: time.Hour, ChildLife: 66 * time.Minute, ChildRand: 6 * time.Minute}) || tn.Mode != ike.ModeTunnel {
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
		{"life below rekey", with("start_action: start", "start_action: start\n    rekey_time: 1h\n    life_time: 30m"), "bad.yaml:10: life_time 30m0s must be above rekey_time 1h0m0s"},
		{"life equal to rekey", with("start_action: start", "start_action: start\n    rekey_time: 10m\n    life_time: 10m"), "bad.yaml:10: life_time 10m0s must be above rekey_time 10m0s"},
		{"life below default rekey", with("start_action: start", "start_action: start\n    life_time: 50m"), "bad.yaml:9: life_time 50m0s must be above rekey_time 1h0m0s (the default)"},
		{"rand not below rekey", with("start_action: start", "start_action: start\n    rekey_time: 10m\n    rand_time: 10m"), "bad.yaml:10: rand_time 10m0s must be below rekey_time 10m0s"},
		{"rand without rekey", with("start_action: start", "start_action: start\n    rekey_time: 0\n    rand_time: 1m"), "bad.yaml:10: rand_time needs a rekey_time"},
		{"negative lifetime", with("start_action: start", "start_action: start\n    life_time: -1h"), "bad.yaml:9: invalid duration"},
		{"lifetime too long", with("start_action: start", "start_action: start\n    ike_rekey_time: 9000h"), "bad.yaml:9: ike_rekey_time 9000h0m0s is above the maximum 8760h0m0s"},
		{"over without soft", with("start_action: start", "start_action: start\n    ike_rekey_time: 0\n    over_time: 5m"), "bad.yaml:10: over_time needs ike_rekey_time or reauth_time"},
		{"ike rand not below rekey", with("start_action: start", "start_action: start\n    ike_rand_time: 4h"), "bad.yaml:9: ike_rand_time 4h0m0s must be below ike_rekey_time 4h0m0s (the default)"},
		{"ike rand not below reauth", with("start_action: start", "start_action: start\n    reauth_time: 1h\n    ike_rand_time: 2h"), "bad.yaml:10: ike_rand_time 2h0m0s must be below reauth_time 1h0m0s"},
		{"life packets not above rekey", with("start_action: start", "start_action: start\n    rekey_packets: 50\n    life_packets: 50"), "bad.yaml:10: life_packets 50 must be above rekey_packets 50"},
		{"life bytes below rekey", with("start_action: start", "start_action: start\n    rekey_bytes: 1M\n    life_bytes: 512K"), "bad.yaml:10: life_bytes 524288 must be above rekey_bytes 1048576"},
		{"rand bytes without rekey", with("start_action: start", "start_action: start\n    life_bytes: 1G\n    rand_bytes: 1M"), "bad.yaml:10: rand_bytes needs a rekey_bytes"},
		{"rand packets not below rekey", with("start_action: start", "start_action: start\n    rekey_packets: 100\n    rand_packets: 100"), "bad.yaml:10: rand_packets 100 must be below rekey_packets 100"},
		{"negative volume", with("start_action: start", "start_action: start\n    rekey_packets: -5"), "bad.yaml:9: invalid count \"-5\""},
		{"volume suffix", with("start_action: start", "start_action: start\n    rekey_bytes: 4T"), "bad.yaml:9: invalid count \"4T\""},
		{"volume overflow", with("start_action: start", "start_action: start\n    life_bytes: 18446744073709551615G"), "bad.yaml:9: invalid count"},
		{"dataplane", "ike:\n  dataplane: kernel\n", "bad.yaml:2: dataplane must be none, tun, xfrm or auto, got \"kernel\""},
		{"tun key with xfrm", "ike:\n  dataplane: xfrm\n  tun_name: espy0\n", "bad.yaml:3: tun_name needs dataplane: tun or auto"},
		{"xfrm two listeners", "ike:\n  listen: [192.0.2.1, 192.0.2.9]\n  dataplane: xfrm\n", "bad.yaml:3: dataplane xfrm needs exactly one listen address"},
		{"tun key without dataplane", "ike:\n  listen: [192.0.2.1]\n  tun_mtu: 1400\n", "bad.yaml:3: tun_mtu needs dataplane: tun or auto"},
		{"tun addrs without dataplane", "ike:\n  dataplane: none\n  tun_addrs: [198.51.100.1/32]\n", "bad.yaml:3: tun_addrs needs dataplane: tun or auto"},
		{"dataplane two listeners", "ike:\n  listen: [192.0.2.1, 192.0.2.9]\n  dataplane: tun\n", "bad.yaml:3: dataplane tun needs exactly one listen address"},
		{"tun name", "ike:\n  dataplane: tun\n  tun_name: espy/0\n", "bad.yaml:3: invalid interface name \"espy/0\""},
		{"tun name long", "ike:\n  dataplane: auto\n  tun_name: espy0123456789abc\n", "bad.yaml:3: invalid interface name"},
		{"tun mtu", "ike:\n  dataplane: tun\n  tun_mtu: 500\n", "bad.yaml:3: tun_mtu 500 out of range (576 to 65414)"},
		{"tun addr", "ike:\n  dataplane: tun\n  tun_addrs:\n    - 198.51.100.1/32\n    - 198.51.100.2\n", "bad.yaml:5: invalid address \"198.51.100.2\""},
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

// TestLifetimes maps the lifetime keys to ike.Config's terms: absent is
// the stack's default (0), 0 is off (negative), a duration is itself.
func TestLifetimes(t *testing.T) {
	for _, tt := range []struct {
		name, keys string
		want       Lifetimes
	}{
		{"absent", "", Lifetimes{}},
		{"child rekey", "rekey_time: 10s", Lifetimes{ChildRekey: 10 * time.Second}},
		{"child rekey off", "rekey_time: 0", Lifetimes{ChildRekey: -1}},
		{"child all", "{rekey_time: 20m, life_time: 30m, rand_time: 5m}", Lifetimes{ChildRekey: 20 * time.Minute, ChildLife: 30 * time.Minute, ChildRand: 5 * time.Minute}},
		{"life above default rekey", "life_time: 2h", Lifetimes{ChildLife: 2 * time.Hour}},
		{"life without rekey", "{rekey_time: 0, life_time: 8h}", Lifetimes{ChildRekey: -1, ChildLife: 8 * time.Hour}},
		{"no jitter", "{rand_time: 0, ike_rand_time: 0}", Lifetimes{ChildRand: -1, IKERand: -1}},
		{"ike", "{ike_rekey_time: 2h, over_time: 10m, ike_rand_time: 5m}", Lifetimes{IKERekey: 2 * time.Hour, IKEOver: 10 * time.Minute, IKERand: 5 * time.Minute}},
		{"packets", "{rekey_packets: 50, life_packets: 60, rand_packets: 5}", Lifetimes{RekeyPackets: 50, LifePackets: 60, RandPackets: 5}},
		{"bytes with suffixes", "{rekey_bytes: 512M, life_bytes: 1G, rand_bytes: 1k}", Lifetimes{RekeyBytes: 512 << 20, LifeBytes: 1 << 30, RandBytes: 1 << 10}},
		{"life packets alone", "life_packets: 1000", Lifetimes{LifePackets: 1000}},
		{"volumes off", "{rekey_bytes: 0, life_packets: 0}", Lifetimes{}},
		{"reauth only", "{ike_rekey_time: 0, reauth_time: 3h, over_time: 0}", Lifetimes{IKERekey: -1, IKEReauth: 3 * time.Hour, IKEOver: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			y := tunnelYAML
			if tt.keys != "" {
				// A flow mapping of several keys merges as separate lines.
				y += "    " + strings.NewReplacer("{", "", "}", "", ", ", "\n    ").Replace(tt.keys) + "\n"
			}
			c, err := Parse("life.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			tn, err := c.Tunnel(0)
			if err != nil {
				t.Fatal(err)
			}
			if tn.Lifetimes != tt.want {
				t.Errorf("got %+v, want %+v", tn.Lifetimes, tt.want)
			}
			var cfg ike.Config
			tn.Lifetimes.Apply(&cfg)
			if cfg.ChildRekeyTime != tt.want.ChildRekey || cfg.ChildLifeTime != tt.want.ChildLife || cfg.ChildRandTime != tt.want.ChildRand ||
				cfg.IKERekeyTime != tt.want.IKERekey || cfg.IKEReauthTime != tt.want.IKEReauth || cfg.IKEOverTime != tt.want.IKEOver || cfg.IKERandTime != tt.want.IKERand {
				t.Errorf("Apply: %+v", cfg)
			}
		})
	}
}

// TestDataPlaneSpec reads the data plane keys of the ike: section.
func TestDataPlaneSpec(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want DataPlaneSpec
	}{
		{"ike: {}\n", DataPlaneSpec{}},
		{"ike: {dataplane: none}\n", DataPlaneSpec{}},
		{"ike: {dataplane: tun}\n", DataPlaneSpec{Kind: DataPlaneTUN}},
		{"ike: {dataplane: xfrm}\n", DataPlaneSpec{Kind: DataPlaneXFRM}},
		{"ike:\n  listen: [2001:db8::1]\n  dataplane: auto\n  tun_name: espyt\n  tun_mtu: 1400\n  tun_addrs: [198.51.100.1/24, 2001:db8:1::1/128]\n",
			DataPlaneSpec{Kind: DataPlaneAuto, TunName: "espyt", TunMTU: 1400,
				TunAddrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("2001:db8:1::1/128")}}},
	} {
		c, err := Parse("dp.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		s, err := c.IKESpec()
		if err != nil || s.DataPlane.Kind != tt.want.Kind || s.DataPlane.TunName != tt.want.TunName || s.DataPlane.TunMTU != tt.want.TunMTU ||
			!slices.Equal(s.DataPlane.TunAddrs, tt.want.TunAddrs) {
			t.Errorf("%q: %+v %v, want %+v", tt.yaml, s.DataPlane, err, tt.want)
		}
	}
	if DataPlaneNone.String() != "none" || DataPlaneTUN.String() != "tun" || DataPlaneAuto.String() != "auto" {
		t.Error("DataPlaneKind.String")
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

// TestVolumesApply checks that the volume keys reach ike.Config, which
// ikeservice builds each tunnel's configuration from.
func TestVolumesApply(t *testing.T) {
	y := tunnelYAML + "    rekey_bytes: 1M\n    life_bytes: 2M\n    rand_bytes: 1K\n    rekey_packets: 50\n    life_packets: 60\n    rand_packets: 5\n"
	c, err := Parse("v.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	tn, err := c.Tunnel(0)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ike.Config
	tn.Lifetimes.Apply(&cfg)
	got := [6]uint64{cfg.ChildRekeyBytes, cfg.ChildLifeBytes, cfg.ChildRandBytes, cfg.ChildRekeyPackets, cfg.ChildLifePackets, cfg.ChildRandPackets}
	if want := [6]uint64{1 << 20, 2 << 20, 1 << 10, 50, 60, 5}; got != want {
		t.Fatalf("ike.Config volumes %v, want %v", got, want)
	}
}
