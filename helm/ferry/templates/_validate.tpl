{{/*
Values that would render objects a cluster accepts but pods that break, or
sessions that are dropped: refused at install, naming the value to set.
Included once, by the ConfigMap (every rendering has one).
*/}}
{{- define "ferry.validate" -}}
{{- $v := .Values -}}
{{- $balancer := $v.proxyProtocol.balancer -}}
{{- if not $balancer -}}
{{- fail "proxyProtocol.balancer is required: aws-nlb, haproxy or custom (the balancer sends PROXY headers; set proxyProtocol.from to its addresses), gcp, azure or metallb (a passthrough balancer; the Service keeps client addresses with externalTrafficPolicy Local), or none (no balancer). See the README's \"Deploying on Kubernetes\"." -}}
{{- end -}}
{{- $proxy := include "ferry.proxyProtocol" . -}}
{{- if and $proxy (not $v.proxyProtocol.from) -}}
{{- fail (printf "proxyProtocol.from is required with proxyProtocol.balancer %s: the balancer's source CIDRs (for aws-nlb the VPC subnets the NLB is in). Ferry requires a PROXY header from exactly these addresses." $balancer) -}}
{{- end -}}
{{- if and (not $proxy) $v.proxyProtocol.from -}}
{{- fail (printf "proxyProtocol.from is set but proxyProtocol.balancer %s sends no PROXY header: every session from those addresses would be closed without a greeting. Remove proxyProtocol.from, or choose aws-nlb, haproxy or custom." $balancer) -}}
{{- end -}}
{{- /* Every Service the balancer sends to: SMTP, and the inbound MX. */ -}}
{{- $services := list (dict "key" "service" "service" $v.service) -}}
{{- if include "ferry.inbound" . -}}
{{- $services = append $services (dict "key" "inbound.service" "service" $v.inbound.service) -}}
{{- end -}}
{{- range $services -}}
{{- $etp := include "ferry.externalTrafficPolicy" (dict "root" $ "service" .service) -}}
{{- if and (not $proxy) (ne .service.type "ClusterIP") (eq $etp "Cluster") -}}
{{- fail (printf "%s.externalTrafficPolicy Cluster with proxyProtocol.balancer %s: without PROXY headers every client would arrive from a node's address, and one address's lockout and session cap would hit everyone. Set %s.externalTrafficPolicy: Local (or leave it empty)." .key $balancer .key) -}}
{{- end -}}
{{- if and (eq $balancer "aws-nlb") (ne .service.type "LoadBalancer") -}}
{{- fail (printf "proxyProtocol.balancer aws-nlb needs %s.type LoadBalancer" .key) -}}
{{- end -}}
{{- end -}}
{{- if and $v.redis.sentinels (not $v.redis.masterName) -}}
{{- fail "redis.masterName is required with redis.sentinels: the name the sentinels know the primary by (often mymaster)" -}}
{{- end -}}
{{- $roles := list "ingress" "delivery" -}}
{{- if include "ferry.inbound" . -}}
{{- $roles = append $roles "inbound" -}}
{{- end -}}
{{- range $role := $roles -}}
{{- $a := (index $v $role).autoscaling -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above %s.autoscaling.maxReplicas (%d)" $role (int $a.minReplicas) $role (int $a.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.mode "cluster") $v.keda.enabled -}}
{{- if not $v.keda.prometheusServer -}}
{{- fail "keda.prometheusServer is required with keda.enabled: the Prometheus that scrapes Ferry (e.g. http://prometheus-operated.monitoring:9090)" -}}
{{- end -}}
{{- if not (or $v.serviceMonitor.enabled $v.keda.ownScrapeConfig) -}}
{{- fail "keda.enabled needs Prometheus to scrape the pods: set serviceMonitor.enabled (Prometheus Operator), or keda.ownScrapeConfig: true if a scrape config of yours does. Without it KEDA reads nothing and delivery never scales." -}}
{{- end -}}
{{- $a := $v.delivery.autoscaling -}}
{{- if or (lt (int $v.keda.fallbackReplicas) (int $a.minReplicas)) (gt (int $v.keda.fallbackReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "keda.fallbackReplicas (%d) must lie within delivery.autoscaling.minReplicas and maxReplicas (%d..%d)" (int $v.keda.fallbackReplicas) (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Ferry keys the chart owns: the pods, probes, Services and volumes are built
around them, so `config` may not change them. Argument: .Values.
*/}}
{{- define "ferry.ownedConfig" -}}
{{- $c := .config -}}
{{- $owned := dict
  "listen" "the pods listen on 2525, 2587, 2465 and 2588 (the Service maps service.ports, directSubmission.port), inbound pods on 2526 (inbound.*); PROXY protocol is proxyProtocol.*"
  "admin" "set admin.port; the probes and the ServiceMonitor speak plain HTTP to it (terminate TLS in front of the admin Service)"
  "tls" "set tls.existingSecret or tls.certManager"
-}}
{{- range $key, $why := $owned -}}
{{- if hasKey $c $key -}}
{{- fail (printf "config.%s is the chart's: %s" $key $why) -}}
{{- end -}}
{{- end -}}
{{- $server := dict
  "hostname" "set hostname"
  "data_dir" "the pods mount their data volume at /var/lib/ferry"
  "shutdown_grace_secs" "set drain.graceSeconds; the pod's terminationGracePeriodSeconds follows it"
-}}
{{- range $key, $why := $server -}}
{{- if hasKey (default dict $c.server) $key -}}
{{- fail (printf "config.server.%s is the chart's: %s" $key $why) -}}
{{- end -}}
{{- end -}}
{{- $store := default dict $c.store -}}
{{- range $key := list "backend" "path" -}}
{{- if hasKey $store $key -}}
{{- fail (printf "config.store.%s is the chart's: set mode (cluster: Redis; single: the embedded store on persistence.*)" $key) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "url" "sentinels" "master_name" "ca_file" "wait_replicas" "durability" -}}
{{- if hasKey (default dict $store.redis) $key -}}
{{- fail (printf "config.store.redis.%s is the chart's: set redis.* (redis.existingSecret for the URL)" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
