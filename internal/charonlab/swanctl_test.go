package charonlab

import "testing"

// TestSwanctlConf checks the generated swanctl.conf against the text
// cmd/espy's interop test used to spell out.
func TestSwanctlConf(t *testing.T) {
	got := SwanctlConf([]string{"a.lab.example", "b.lab.example"},
		Conn{Name: "toespy", Proposals: "aes128gcm16-prfsha256-x25519", Children: []Child{
			{Name: "tonet", LocalTS: "203.0.113.0/24", RemoteTS: "198.51.100.0/24", ESP: "null-sha256"},
		}}.String())
	const want = `connections {
  toespy {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = b.lab.example
    }
    remote {
      auth = psk
      id = a.lab.example
    }
    children {
      tonet {
        local_ts = 203.0.113.0/24
        remote_ts = 198.51.100.0/24
        esp_proposals = null-sha256
      }
    }
  }
}
secrets {
  ike-lab {
    id-a = a.lab.example
    id-b = b.lab.example
    secret = "` + PSK + `"
  }
}
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	c := Conn{Name: "x", Proposals: "p", LocalID: "c.lab.example", Settings: "rekey_time = 5s\nrand_time = 0s",
		Children: []Child{{Name: "y", ESP: "e", Settings: "life_time = 30s"}}}.String()
	const wantC = `  x {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = p
    rekey_time = 5s
    rand_time = 0s
    local {
      auth = psk
      id = c.lab.example
    }
    remote {
      auth = psk
      id = a.lab.example
    }
    children {
      y {
        local_ts = 203.0.113.1/32
        remote_ts = 198.51.100.1/32
        esp_proposals = e
        life_time = 30s
      }
    }
  }
`
	if c != wantC {
		t.Fatalf("got\n%s\nwant\n%s", c, wantC)
	}
}
