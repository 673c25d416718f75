# wasmnode on every Nomad client (a system job), each attached to one SPLAI
# control plane (`wasmnode agent`), run from the `make image` image with
# Nomad's Docker driver. Before `nomad job run`:
#   - load the image on each client, or push it to your registry;
#   - store the secrets: nomad var put nomad/jobs/wasmnode \
#       control_plane_token=... api_key=...
#   - set control_plane.url in the template below.
job "wasmnode" {
  type = "system"

  group "wasmnode" {
    network {
      port "api" {
        static = 9000
      }
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "5s"
      mode     = "delay"
    }

    task "wasmnode" {
      driver = "docker"

      config {
        image   = "wasmnode:0.1.0"
        args    = ["--config", "/local/wasmnode.toml", "agent"]
        ports   = ["api"]
        volumes = ["/var/lib/wasmnode:/data", "/etc/ssl/certs:/etc/ssl/certs:ro"]
      }

      template {
        destination = "local/wasmnode.toml"
        data        = <<-EOT
          [node]
          labels = ["nomad"]

          [api]
          listen = "0.0.0.0:9000"

          [control_plane]
          url = "http://splai-control-plane.service.consul:8080"

          [scheduler]
          drain_timeout_seconds = 30

          [docker]
          mode = "off"
        EOT
      }

      template {
        destination = "secrets/wasmnode.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/wasmnode" }}
          SPLAI_API_TOKEN={{ .control_plane_token }}
          WASMNODE_API_KEY={{ .api_key }}
          {{ end }}
        EOT
      }

      env {
        SPLAI_WORKER_ID = "${node.unique.name}"
      }

      # SIGTERM drains: no new work; running jobs may finish within
      # scheduler.drain_timeout_seconds before the node exits.
      kill_signal  = "SIGTERM"
      kill_timeout = "45s"

      service {
        name     = "wasmnode"
        provider = "nomad"
        port     = "api"

        check {
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      # Matches `make bench` (idle RSS about 52 MiB); tasks' memories may
      # take the node up to memory_max.
      resources {
        cpu        = 200
        memory     = 64
        memory_max = 2048
      }
    }
  }
}
