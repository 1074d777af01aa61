package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/rethinkdb-agent/rethinkdb-agent/rethink"
)

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fakeNode replaces the direct node read for one test.
func fakeNode(t *testing.T, v rethink.View, err error) *rethink.Options {
	t.Helper()
	var got rethink.Options
	old := readNodeView
	readNodeView = func(_ context.Context, opts rethink.Options) (rethink.View, error) {
		got = opts
		return v, err
	}
	t.Cleanup(func() { readNodeView = old })
	return &got
}

func runStatus(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := realMain(append([]string{"status"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestStatusTable(t *testing.T) {
	fakeNode(t, rethink.View{}, errors.New("the agent answers: the node must not be read"))
	f := &fakeAgent{status: exampleStatus(), notReady: []string{"critical issue db_name_collision: x"}}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	code, out, errOut := runStatus("--http", srv.URL)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{
		"NOT READY", "- critical issue db_name_collision: x", "Node:", "server_1 (" + server1.ID + ")",
		"Proxy:", "proxy-5d1e (running)",
		"SERVERS (2)", "NAME", "CONNECTED TO", "172.18.0.2:29015",
		"PEERS (1)", "addr:172.18.0.4:29015", "foreign",
		"ISSUES (1)", "db_name_collision", "There are multiple databases named `test`.",
		"RECENT ACTIONS (2)", "drop_empty_db", "(dropped)", "bridge_started",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "more") {
		t.Errorf("issue descriptions are cut at the first line:\n%s", out)
	}
}

func TestStatusJSON(t *testing.T) {
	f := &fakeAgent{status: exampleStatus()}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	code, out, errOut := runStatus("--http", strings.TrimPrefix(srv.URL, "http://"), "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if doc.Source != "agent" || len(doc.Servers) != 2 || len(doc.Recent) != 2 || doc.Ready == nil || !*doc.Ready {
		t.Errorf("doc = %+v", doc)
	}
}

func TestStatusCheck(t *testing.T) {
	fakeNode(t, blogView, nil)
	f := &fakeAgent{status: exampleStatus(), notReady: []string{"peer x is outside the cluster (foreign)"}}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	if code, _, _ := runStatus("--http", srv.URL, "--check"); code != 1 {
		t.Errorf("--check while not ready: exit %d, want 1", code)
	}
	f.set(func(f *fakeAgent) { f.notReady = nil })
	if code, _, errOut := runStatus("--http", srv.URL, "--check"); code != 0 {
		t.Errorf("--check when ready: exit %d (%s), want 0", code, errOut)
	}
	// Without an agent --check fails, even though the node answers.
	if code, _, errOut := runStatus("--http", closedAddr(t), "--check"); code != 1 || !strings.Contains(errOut, "no agent answers") {
		t.Errorf("--check without an agent: exit %d %q, want 1", code, errOut)
	}
}

func TestStatusFallsBackToNode(t *testing.T) {
	t.Setenv("RETHINKDB_AGENT_PASSWORD", "s3cret")
	got := fakeNode(t, blogView, nil)
	t.Setenv("RETHINKDB_AGENT_HTTP", closedAddr(t)) // the environment names the agent's address
	code, out, errOut := runStatus("--node", "10.0.0.5:28015")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	if got.Address != "10.0.0.5:28015" || got.Password != "s3cret" || got.User != "admin" {
		t.Errorf("dialled %v, want 10.0.0.5:28015 as admin with the password from the environment", got)
	}
	for _, want := range []string{"No agent answers at", "read the node 10.0.0.5:28015 directly",
		"SERVERS (2)", "server_2", "ISSUES (1)", "db_name_collision"} {
		if !strings.Contains(out, want) {
			t.Errorf("fallback output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PEERS") || strings.Contains(out, "RECENT ACTIONS") {
		t.Errorf("without an agent there are no peers or actions to show:\n%s", out)
	}

	code, out, _ = runStatus("--http", "off", "--json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || doc.Source != "node" || len(doc.Servers) != 2 {
		t.Errorf("--http off --json: exit %d, %v, doc %+v", code, err, doc)
	}
}

func TestStatusQuiet(t *testing.T) {
	fakeNode(t, blogView, nil)
	f := &fakeAgent{status: exampleStatus(), notReady: []string{"not ready, but alive"}}
	srv := newTestServer(t, f, fakeDiscovery{}, nil)
	if code, out, errOut := runStatus("--http", srv.URL, "--quiet"); code != 0 || out != "" || errOut != "" {
		t.Errorf("--quiet with an agent: exit %d, %q %q; want 0 and no output", code, out, errOut)
	}
	if code, out, _ := runStatus("--http", closedAddr(t), "--quiet"); code != 0 || out != "" {
		t.Errorf("--quiet with only the node: exit %d, %q; want 0 and no output", code, out)
	}
	fakeNode(t, rethink.View{}, errors.New("connection refused"))
	if code, out, _ := runStatus("--http", closedAddr(t), "--quiet"); code != 1 || out != "" {
		t.Errorf("--quiet with nothing answering: exit %d, %q; want 1", code, out)
	}
}

func TestStatusNothingAnswers(t *testing.T) {
	fakeNode(t, rethink.View{}, errors.New("connect to rethinkdb at 127.0.0.1:28015: connection refused"))
	code, out, errOut := runStatus("--http", closedAddr(t))
	if code != 1 || out != "" || !strings.Contains(errOut, "no agent answers") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and both errors", code, out, errOut)
	}
}

func TestStatusBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "nohost"}, "--node \"nohost\""},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--recent", "-1"}, "--recent"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		code, _, errOut := runStatus(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("status %v: exit %d %q, want 2 naming %s", tc.args, code, errOut, tc.want)
		}
	}
}

func TestStatusURL(t *testing.T) {
	for _, tc := range []struct{ addr, want, err string }{
		{"127.0.0.1:29080", "http://127.0.0.1:29080/status?recent=5", ""},
		{":29080", "http://127.0.0.1:29080/status?recent=5", ""},
		{"0.0.0.0:29080", "http://127.0.0.1:29080/status?recent=5", ""},
		{"[::]:29080", "http://127.0.0.1:29080/status?recent=5", ""},
		{"agent.local:9", "http://agent.local:9/status?recent=5", ""},
		{"https://agent.example/rdb/", "https://agent.example/rdb/status?recent=5", ""},
		{"off", "", "off"},
		{"nohost", "", "want HOST:PORT"},
	} {
		got, err := statusURL(tc.addr, 5)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("statusURL(%q) = %q, %v; want an error with %q", tc.addr, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("statusURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}
