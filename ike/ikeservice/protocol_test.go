package ikeservice

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	for _, tt := range []struct {
		line string
		want Request
		err  string // "" for success
	}{
		{`{"version":1,"command":"status"}`, Request{Version: 1, Command: CmdStatus}, ""},
		{`{"version":1,"command":"initiate","tunnel":"site-b"}`, Request{Version: 1, Command: CmdInitiate, Tunnel: "site-b"}, ""},
		{`{"version":1,"command":"terminate","tunnel":"x"}`, Request{Version: 1, Command: CmdTerminate, Tunnel: "x"}, ""},
		{`{"version":2,"command":"status"}`, Request{}, "protocol version 2"},
		{`{"command":"status"}`, Request{}, "protocol version 0"},
		{`{"version":1,"command":"reboot"}`, Request{}, `unknown command "reboot"`},
		{`{"version":1,"command":"initiate"}`, Request{}, "initiate needs a tunnel name"},
		{`{"version":1,"command":"status","tunnel":"x"}`, Request{}, "status takes no tunnel"},
		{`{"version":1,"command":"status","force":true}`, Request{}, `unknown field "force"`},
		{`{"version":1,"command":"status"} {}`, Request{}, "trailing data"},
		{`[1]`, Request{}, "cannot unmarshal"},
		{``, Request{}, "EOF"},
		{`{"version":1,"command":"status","tunnel":"` + strings.Repeat("a", maxRequestLine) + `"}`, Request{}, "more than 4096"},
	} {
		got, err := DecodeRequest([]byte(tt.line))
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("%.60s: %+v %v", tt.line, got, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%.60s: error %v, want ErrBadRequest with %q", tt.line, err, tt.err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"version":1,"command":"status"}`))
	f.Add([]byte(`{"version":1,"command":"initiate","tunnel":"site-b"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeRequest(line)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if r.Version != ProtocolVersion || (r.Command != CmdStatus && r.Tunnel == "") {
			t.Errorf("accepted %+v", r)
		}
	})
}
