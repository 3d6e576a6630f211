package testcluster

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{"-MOVED 1 127.0.0.12:1\r\n", ReplyError("MOVED 1 127.0.0.12:1")},
		{":-42\r\n", int64(-42)},
		{"$3\r\nf\no\r\n", "f\no"},
		{"$0\r\n\r\n", ""},
		{"$-1\r\n", nil},
		{"*-1\r\n", nil},
		{"*0\r\n", []any{}},
		{"*3\r\n$1\r\na\r\n:1\r\n*1\r\n-ERR e\r\n", []any{"a", int64(1), []any{ReplyError("ERR e")}}},
	}
	for _, tt := range tests {
		got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)), 0)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("readReply(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestReadReplyMalformed(t *testing.T) {
	for _, in := range []string{
		"",                 // EOF
		"+OK\n",            // no CR
		"\r\n",             // no type
		":x\r\n",           // bad integer
		"$-2\r\n",          // bad length
		"$3\r\nab",         // truncated
		"$3\r\nfoobar\r\n", // length mismatch
		"*1\r\n",           // missing element
		"%1\r\n",           // RESP3 map: never requested
		strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n",
	} {
		if got, err := readReply(bufio.NewReader(strings.NewReader(in)), 0); err == nil {
			t.Errorf("readReply(%q) = %#v, want error", in, got)
		}
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []string{"SET", "k", ""}))
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"; got != want {
		t.Errorf("appendCommand = %q, want %q", got, want)
	}
}

func TestCommandArgs(t *testing.T) {
	got, err := commandArgs([]any{"SET", []byte("k"), 1, int64(-2), uint64(3), 0.5})
	if want := []string{"SET", "k", "1", "-2", "3", "0.5"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("commandArgs = %q, %v; want %q", got, err, want)
	}
	for _, args := range [][]any{nil, {"GET", struct{}{}}} {
		if _, err := commandArgs(args); err == nil {
			t.Errorf("commandArgs(%v): want error", args)
		}
	}
}

func TestParseClusterNodes(t *testing.T) {
	in := "" +
		"aa 127.0.0.11:15000@25000,h myself,master - 0 0 1 connected 0-5460 [5461-<-bb]\n" +
		"bb 127.0.0.12:15000@25000 master,fail? - 0 0 2 connected 5461 5462-10922\n" +
		"cc 127.0.0.14:15000@25000 slave,fail aa 0 0 1 disconnected\n" +
		"dd :0@0 master,noaddr - 0 0 0 disconnected\n"
	got, err := parseClusterNodes(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []nodeInfo{
		{id: "aa", addr: "127.0.0.11:15000", master: true, myself: true, slots: []SlotRange{{0, 5460}}},
		{id: "bb", addr: "127.0.0.12:15000", master: true, pfail: true, slots: []SlotRange{{5461, 5461}, {5462, 10922}}},
		{id: "cc", addr: "127.0.0.14:15000", masterID: "aa", fail: true},
		{id: "dd", addr: ":0", master: true, pending: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseClusterNodes:\n got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"aa 127.0.0.11:1@2 master -\n", "aa 127.0.0.11:1@2 master - 0 0 1 connected 9-3\n"} {
		if _, err := parseClusterNodes(bad); err == nil {
			t.Errorf("parseClusterNodes(%q): want error", bad)
		}
	}
}

func TestInfoField(t *testing.T) {
	info := "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n"
	if v, ok := infoField(info, "master_link_status"); !ok || v != "up" {
		t.Errorf("infoField = %q, %t", v, ok)
	}
	if _, ok := infoField(info, "master"); ok {
		t.Error("infoField matched a prefix of a name")
	}
}
