// Command sidecar is the baseline users run today: a small Go HTTP service
// on a Unix socket that nginx reaches with proxy_pass. For the core bench
// it answers with the same bytes the echo handlers print.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	sock := flag.String("socket", "/tmp/resty-ffi-bench.sock", "unix socket to listen on")
	body := flag.String("body", "", "response body")
	flag.Parse()
	os.Remove(*sock)
	ln, err := net.Listen("unix", *sock)
	if err != nil {
		log.Fatal(err)
	}
	os.Chmod(*sock, 0o666)
	payload := []byte(*body)
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(payload)
	})
	log.Fatal(http.Serve(ln, nil))
}
