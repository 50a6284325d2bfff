package packet

import "testing"

func TestSumFold(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want uint16 // folded sum
	}{
		// RFC 1071 section 3's example.
		{"rfc1071", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0xddf2},
		{"odd length pads with zero", []byte{0x12, 0x34, 0x56}, 0x1234 + 0x5600},
		{"carries fold back", []byte{0xff, 0xff, 0x00, 0x02}, 0x0002},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		if got := Fold(Sum(tt.b, 0)); got != tt.want {
			t.Errorf("%s: %#04x, want %#04x", tt.name, got, tt.want)
		}
	}
	// Summing in pieces is summing the whole (on 16-bit boundaries).
	b := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if Fold(Sum(b[6:], Sum(b[:6], 0))) != Fold(Sum(b, 0)) {
		t.Error("sum in pieces differs from the sum of the whole")
	}
}
