package rethink

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptionsRedaction(t *testing.T) {
	o := Options{Address: "127.0.0.1:28015", User: "admin", Password: "s3cret-pw"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("dial", "opts", o)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("dial", "opts", o)
	outs := []string{
		buf.String(),
		o.String(),
		fmt.Sprint(o),
		fmt.Sprintf("%v %+v %#v %s", o, o, o, o),
		fmt.Sprintf("%v", &o),
	}
	for _, s := range outs {
		if strings.Contains(s, "s3cret") {
			t.Errorf("password leaked: %s", s)
		}
	}
	if !strings.Contains(buf.String(), "127.0.0.1:28015") || !strings.Contains(o.String(), "REDACTED") {
		t.Errorf("address or redaction marker missing: %s / %s", buf.String(), o.String())
	}
}

func TestLoadPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("RDB_TEST_PW", "from-env")
	tests := []struct {
		name, file, env, want, wantErr string
	}{
		{name: "file wins", file: write("a", "from-file\n"), env: "RDB_TEST_PW", want: "from-file"},
		{name: "one newline only", file: write("b", "pw\n\n"), want: "pw\n"},
		{name: "crlf", file: write("c", "pw\r\n"), want: "pw"},
		{name: "no newline", file: write("d", "pw"), want: "pw"},
		{name: "inner spaces kept", file: write("e", " p w \n"), want: " p w "},
		{name: "env", env: "RDB_TEST_PW", want: "from-env"},
		{name: "unset env", env: "RDB_TEST_PW_UNSET", want: ""},
		{name: "nothing", want: ""},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: filepath.Join(dir, "nope")},
		{name: "empty file", file: write("f", "\n"), wantErr: "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadPassword(tc.file, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
