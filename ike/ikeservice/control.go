package ikeservice

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Control server limits.
const (
	maxControlConns = 16               // concurrent control connections
	controlIdle     = 60 * time.Second // a connection with no request for this long is closed
	terminateWait   = 10 * time.Second // bound on the peer's answer to each Delete
	initiateWait    = 3 * time.Minute  // bound on an initiation requested over the socket
	reloadWait      = 5 * time.Minute  // bound on a reload's rekeys and deletes
)

// controlServer serves the line-delimited JSON control protocol on a unix
// socket.
type controlServer struct {
	s    *Service
	ln   *net.UnixListener
	path string
	sem  chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// listenControl binds the control socket with mode 0600. It binds under a
// temporary name and renames, so that the socket is never reachable with
// wider permissions; a stale socket of a dead process is replaced, a live
// one is an error.
func listenControl(path string, s *Service) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("ikeservice: control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		// Never rename over a file that is not a socket (a typo in
		// ike.socket must not replace, say, the configuration).
		return nil, fmt.Errorf("ikeservice: control socket %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("ikeservice: control socket %s is in use by another process", path)
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ikeservice: control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("ikeservice: control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("ikeservice: control socket: %w", err)
	}
	cs := &controlServer{s: s, ln: ln, path: path, sem: make(chan struct{}, maxControlConns), conns: map[net.Conn]struct{}{}}
	cs.wg.Go(cs.serve)
	return cs, nil
}

func (cs *controlServer) serve() {
	for {
		c, err := cs.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				cs.s.log.Error().Err(err).Msg("control socket accept")
			}
			return
		}
		select {
		case cs.sem <- struct{}{}:
		default:
			writeResponse(c, Response{Version: ProtocolVersion, Code: ErrCodeFailed, Error: "too many control connections"})
			c.Close()
			continue
		}
		cs.mu.Lock()
		cs.conns[c] = struct{}{}
		cs.mu.Unlock()
		cs.wg.Go(func() {
			defer func() {
				c.Close()
				cs.mu.Lock()
				delete(cs.conns, c)
				cs.mu.Unlock()
				<-cs.sem
			}()
			cs.handleConn(c)
		})
	}
}

// handleConn answers requests, one per line, until the client closes or
// sends something that is not a request line.
func (cs *controlServer) handleConn(c net.Conn) {
	r := bufio.NewReaderSize(c, maxRequestLine+1)
	for {
		c.SetReadDeadline(time.Now().Add(controlIdle))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			writeResponse(c, Response{Version: ProtocolVersion, Code: ErrCodeBadRequest, Error: fmt.Sprintf("request longer than %d bytes", maxRequestLine)})
			return
		}
		if err != nil {
			return
		}
		resp := cs.answer(line[:len(line)-1])
		c.SetWriteDeadline(time.Now().Add(controlIdle))
		if writeResponse(c, resp) != nil || resp.Code == ErrCodeBadRequest || resp.Code == ErrCodeVersion {
			return
		}
	}
}

// answer runs one request.
func (cs *controlServer) answer(line []byte) Response {
	resp := Response{Version: ProtocolVersion}
	req, err := DecodeRequest(line)
	if err != nil {
		resp.Error, resp.Code = err.Error(), ErrCodeBadRequest
		if errors.Is(err, errVersion) {
			resp.Code = ErrCodeVersion
		}
		return resp
	}
	s := cs.s
	var ts TunnelStatus
	switch req.Command {
	case CmdStatus:
		st := s.Status()
		resp.Status = &st
		resp.OK = true
		return resp
	case CmdInitiate:
		ctx, cancel := context.WithTimeout(s.ctx, initiateWait)
		ts, err = s.Initiate(ctx, req.Tunnel)
		cancel()
	case CmdTerminate:
		ctx, cancel := context.WithTimeout(context.Background(), terminateWait)
		ts, err = s.Terminate(ctx, req.Tunnel)
		cancel()
	case CmdReload:
		ctx, cancel := context.WithTimeout(s.ctx, reloadWait)
		var rs ReloadStatus
		if rs, err = s.ReloadPolicy(ctx); err == nil {
			resp.Reload = &rs
		}
		cancel()
	}
	if ts.Name != "" {
		resp.Tunnel = &ts
	}
	switch {
	case err == nil:
		resp.OK = true
	case errors.Is(err, ErrUnknownTunnel):
		resp.Error, resp.Code = err.Error(), ErrCodeUnknownTunnel
	case errors.Is(err, ErrNotEstablished):
		resp.Error, resp.Code = err.Error(), ErrCodeNotUp
	case errors.Is(err, ErrPolicy):
		resp.Error, resp.Code = err.Error(), ErrCodePolicy
	default:
		resp.Error, resp.Code = err.Error(), ErrCodeFailed
	}
	s.log.Info().Str("command", req.Command).Str("tunnel", req.Tunnel).Bool("ok", resp.OK).Str("error", resp.Error).Msg("control request")
	return resp
}

func writeResponse(c net.Conn, r Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}

// close stops accepting, drops open connections and removes the socket.
func (cs *controlServer) close() {
	cs.ln.Close()
	os.Remove(cs.path)
	cs.mu.Lock()
	for c := range cs.conns {
		c.Close()
	}
	cs.mu.Unlock()
}

// wait waits for the connection goroutines to finish.
func (cs *controlServer) wait() { cs.wg.Wait() }
