package capture

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

const corpusDir = "/work/shared/corpus"

// TestCorpus reads the shared real captures. The packet counts and first
// timestamps are tshark's (tshark -r F | wc -l; tshark -t ud -c1), checked
// by hand on 2026-11-27.
func TestCorpus(t *testing.T) {
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("corpus not present at %s: %v", corpusDir, err)
	}
	tests := []struct {
		path   string
		format string
		count  int
		first  string // first packet's time, UTC, as tshark -t ud prints it
		link   uint16
	}{
		{"public/encrypted/ndpi_esp.pcapng", "pcapng", 6, "2020-04-19 23:58:43.655842", LinkTypeEthernet},
		{"public/encrypted/ndpi_ipsec_isakmp_esp.pcap", "pcap", 834, "2000-01-01 16:37:15.161000", LinkTypeEthernet},
		{"public/encrypted/ipdecap_3des-cbc_hmac-sha1.cap", "pcap", 300, "", LinkTypeEthernet},
		{"public/encrypted/ipdecap_3des-cbc_null.cap", "pcap", 300, "", LinkTypeEthernet},
		{"public/encrypted/ipdecap_aes-cbc_hmac-sha1.cap", "pcapng", 300, "", LinkTypeEthernet},
		{"public/encrypted/ipdecap_des-cbc_hmac-md5.cap", "pcapng", 300, "", LinkTypeEthernet},
		{"public/esp-null/ipdecap_null_hmac-md5.cap", "pcapng", 300, "2013-01-04 19:58:55.378796", LinkTypeEthernet},
		{"public/encrypted/tcpdump_02-sunrise-sunset-esp.pcap", "pcap", 8, "", LinkTypeEthernet},
		{"public/encrypted/tcpdump_08-sunrise-sunset-aes.pcap", "pcap", 8, "", LinkTypeEthernet},
		{"public/encrypted/tcpdump_08-sunrise-sunset-esp2.pcap", "pcap", 8, "", LinkTypeEthernet},
		{"public/encrypted/tcpdump_espudp1.pcap", "pcap", 8, "", LinkTypeEthernet},
		{"public/esp-null/packetnet_ipv6_esp.pcap", "pcap", 1, "1970-01-06 11:35:49.764041", LinkTypeRaw},
		{"synth/dev_short.pcap", "pcap", 494, "", LinkTypeEthernet},
		{"synth/dev_background.pcap", "pcap", 3536, "", LinkTypeEthernet},
		{"synth/dev_natt.pcap", "pcap", 4360, "", LinkTypeEthernet},
		{"synth/dev_vlan.pcap", "pcap", 1251, "", LinkTypeEthernet},
		{"synth/dev_padding_rare.pcap", "pcap", 3771, "", LinkTypeEthernet},
		{"synth/dev_long.pcap", "pcap", 38046, "", LinkTypeEthernet},
		{"synth/dev_mixed.pcap", "pcap", 15934, "", LinkTypeEthernet},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			path := filepath.Join(corpusDir, tt.path)
			f, err := os.Open(path)
			if errors.Is(err, os.ErrNotExist) {
				t.Skipf("%s not present", path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(tt.path, f)
			if err != nil {
				t.Fatal(err)
			}
			if r.Format() != tt.format {
				t.Errorf("Format() = %s, want %s", r.Format(), tt.format)
			}
			n := 0
			for {
				p, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d packets: %v", n, err)
				}
				if n == 0 && tt.first != "" {
					if got := p.Timestamp.Format("2006-01-02 15:04:05.000000"); got != tt.first {
						t.Errorf("first packet at %s, want %s", got, tt.first)
					}
				}
				if p.LinkType != tt.link {
					t.Fatalf("packet %d: LinkType %d, want %d", n+1, p.LinkType, tt.link)
				}
				n++
			}
			if n != tt.count {
				t.Errorf("read %d packets, tshark reads %d", n, tt.count)
			}
		})
	}
}
