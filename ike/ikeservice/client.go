package ikeservice

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"
)

// ErrNoService is returned by Call when nothing listens on the control
// socket.
var ErrNoService = errors.New("no IKE service is listening (is espy run running with tunnels?)")

// Call sends one request to the control socket at path and returns the
// server's response. An error means no response arrived; a response with
// OK false carries the server's error and code.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%s: %w", path, ErrNoService)
		}
		return Response{}, fmt.Errorf("ikeservice: connect to %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if req.Version == 0 {
		req.Version = ProtocolVersion
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("ikeservice: send to %s: %w", path, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = errors.New("connection closed without a response")
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Response{}, fmt.Errorf("ikeservice: read from %s: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return Response{}, fmt.Errorf("ikeservice: response from %s: %w", path, err)
	}
	if resp.Version != ProtocolVersion {
		return resp, fmt.Errorf("ikeservice: %s speaks protocol version %d, this client %d", path, resp.Version, ProtocolVersion)
	}
	return resp, nil
}
