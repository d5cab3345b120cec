// Command gokit-zk registers and discovers the way a Go service built with go-kit does on
// ZooKeeper: through go-kit's sd/zk registrar and instancer (github.com/go-kit/kit/sd/zk).
//
// The tests of sd-zookeeper build and run it to check that go-kit reads our host:port nodes and
// that we read the nodes go-kit writes (protected ephemeral sequential nodes under
// <path>/<service> holding host:port).
//
//	gokit-zk -servers 127.0.0.1:2181 -path /services -service web -watch
//	    prints {"instances": ["host:port", ...]} (sorted) or {"error": "..."} for each event;
//	gokit-zk -servers 127.0.0.1:2181 -path /services -service web -register 10.0.0.5:8080
//	    prints {"registered": "10.0.0.5:8080"} and keeps the registration until stdin closes.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/zk"
	"github.com/go-kit/log"
)

type line struct {
	Instances  []string `json:"instances"`
	Error      string   `json:"error,omitempty"`
	Registered string   `json:"registered,omitempty"`
}

func main() {
	servers := flag.String("servers", "127.0.0.1:2181", "ZooKeeper servers, comma-separated")
	path := flag.String("path", "/services", "the parent of the services' nodes")
	service := flag.String("service", "", "the service")
	watch := flag.Bool("watch", false, "discover the service")
	register := flag.String("register", "", "register this instance (host:port)")
	flag.Parse()
	if *service == "" || (*watch == (*register != "")) {
		fmt.Fprintln(os.Stderr, "gokit-zk: -service and one of -watch, -register are required")
		os.Exit(2)
	}
	logger := log.NewLogfmtLogger(os.Stderr)
	client, err := zk.NewClient(strings.Split(*servers, ","), logger,
		zk.ConnectTimeout(5*time.Second), zk.SessionTimeout(4*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gokit-zk:", err)
		os.Exit(1)
	}
	defer client.Stop()
	out := json.NewEncoder(os.Stdout)

	if *register != "" {
		registrar := zk.NewRegistrar(client, zk.Service{Path: *path, Name: *service, Data: []byte(*register)}, logger)
		registrar.Register()
		if err := out.Encode(line{Registered: *register}); err != nil {
			os.Exit(1)
		}
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
		}
		return
	}

	instancer, err := zk.NewInstancer(client, strings.TrimRight(*path, "/")+"/"+*service, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gokit-zk:", err)
		os.Exit(1)
	}
	defer instancer.Stop()
	events := make(chan sd.Event, 16)
	instancer.Register(events)
	defer instancer.Deregister(events)
	for event := range events {
		record := line{Instances: append([]string{}, event.Instances...)}
		sort.Strings(record.Instances)
		if event.Err != nil {
			record.Error = event.Err.Error()
		}
		if err := out.Encode(record); err != nil {
			os.Exit(1)
		}
	}
}
