{{/* The chart's name, or nameOverride. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: fullnameOverride, or release-name. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ferry.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ferry.labels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An object's metadata: name, labels (with extra ones) and the common annotations. */}}
{{- define "ferry.metadata" -}}
{{- $root := .root -}}
name: {{ .name }}
labels:
  {{- include "ferry.labels" $root | nindent 2 }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := merge (deepCopy (default dict .annotations)) (deepCopy $root.Values.commonAnnotations) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Selector labels of one role: ingress, delivery or all (single mode). */}}
{{- define "ferry.selector" -}}
app.kubernetes.io/name: {{ include "ferry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* The labels every pod of the release carries, whatever its role. */}}
{{- define "ferry.releaseSelector" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/*
The balancer: whether it sends PROXY headers, and the Service annotations
that make it do so. "true" or "" (templates return strings).
*/}}
{{- define "ferry.proxyProtocol" -}}
{{- if has .Values.proxyProtocol.balancer (list "aws-nlb" "haproxy" "custom") -}}true{{- end -}}
{{- end -}}

{{/* The CIDRs whose connections must carry a PROXY header. */}}
{{- define "ferry.proxyCidrs" -}}
{{- $cidrs := list -}}
{{- range .Values.proxyProtocol.from -}}
{{- if kindIs "map" . -}}
{{- $cidrs = append $cidrs .cidr -}}
{{- else -}}
{{- $cidrs = append $cidrs . -}}
{{- end -}}
{{- end -}}
{{- toJson $cidrs -}}
{{- end -}}

{{/*
What a Service behind the balancer needs. Arguments: root, service (that
Service's values: service or inbound.service).
*/}}
{{- define "ferry.balancerAnnotations" -}}
{{- $a := dict -}}
{{- if eq .root.Values.proxyProtocol.balancer "aws-nlb" -}}
{{- /* AWS Load Balancer Controller: an NLB sending straight to the pods, PROXY v2 on every target group. */ -}}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-type" "external" -}}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" "ip" -}}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol" "*" -}}
{{- end -}}
{{- toYaml (merge (deepCopy (default dict .service.annotations)) $a) -}}
{{- end -}}

{{/* externalTrafficPolicy: the given one, or what the balancer needs. Arguments: root, service. */}}
{{- define "ferry.externalTrafficPolicy" -}}
{{- default (ternary "Cluster" "Local" (eq (include "ferry.proxyProtocol" .root) "true")) .service.externalTrafficPolicy -}}
{{- end -}}

{{/*
The spec of a Service the balancer sends to: its type, traffic policy and
source ranges. Arguments: root, service.
*/}}
{{- define "ferry.balancedServiceSpec" -}}
type: {{ .service.type }}
{{- if ne .service.type "ClusterIP" }}
externalTrafficPolicy: {{ include "ferry.externalTrafficPolicy" . }}
{{- end }}
{{- if eq .service.type "LoadBalancer" }}
{{- with .service.loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The TLS Secret: the given one, or the one cert-manager fills. */}}
{{- define "ferry.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{ .Values.tls.existingSecret }}
{{- else if .Values.tls.certManager.enabled -}}
{{ include "ferry.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{/* The pod's grace: preStop, then the drain, then a margin to exit. */}}
{{- define "ferry.terminationGrace" -}}
{{ add .Values.drain.preStopSeconds .Values.drain.graceSeconds 15 }}
{{- end -}}

{{/* Whether the inbound listener (bounces and complaints, port 25) is on. */}}
{{- define "ferry.inbound" -}}
{{- if .Values.inbound.enabled -}}true{{- end -}}
{{- end -}}

{{/*
The pods' listeners. Arguments: root, role. Inbound pods open only
listen.inbound; the others the submission listeners, and in single mode the
one pod the inbound listener as well.
*/}}
{{- define "ferry.listen" -}}
{{- $v := .root.Values -}}
{{- $listen := dict -}}
{{- if ne .role "inbound" -}}
{{- $listen = dict "smtp" "0.0.0.0:2525" "submission" "0.0.0.0:2587" "submissions" "0.0.0.0:2465" -}}
{{- if $v.directSubmission.enabled -}}
{{- $_ := set $listen "direct_submission" "0.0.0.0:2588" -}}
{{- end -}}
{{- end -}}
{{- if and (include "ferry.inbound" .root) (or (eq .role "inbound") (eq $v.mode "single")) -}}
{{- $_ := set $listen "inbound" "0.0.0.0:2526" -}}
{{- end -}}
{{- if include "ferry.proxyProtocol" .root -}}
{{- $_ := set $listen "proxy_protocol_from" (include "ferry.proxyCidrs" .root | fromJsonArray) -}}
{{- end -}}
{{- toJson $listen -}}
{{- end -}}

{{/*
Ferry's configuration (TOML) for one role's pods: what the chart decides,
then .Values.config over it. Arguments: root, role. Every role but inbound
reads the same file (ferry.toml); inbound pods read inbound.toml.
*/}}
{{- define "ferry.config" -}}
{{- $v := .root.Values -}}
{{- $server := dict "hostname" $v.hostname "data_dir" "/var/lib/ferry" "shutdown_grace_secs" (int $v.drain.graceSeconds) -}}
{{- $listen := include "ferry.listen" . | fromJson -}}
{{- $cfg := dict "server" $server "listen" $listen "admin" (dict "listen" (printf "0.0.0.0:%d" (int $v.admin.port))) "log" (dict "format" "json" "level" "info") "delivery" (dict "default_route" "mx") -}}
{{- if include "ferry.tlsSecret" .root -}}
{{- $_ := set $cfg "tls" (dict "certificate" "/etc/ferry/tls/tls.crt" "key" "/etc/ferry/tls/tls.key") -}}
{{- end -}}
{{- if eq $v.mode "cluster" -}}
{{- $redis := dict "wait_replicas" (int $v.redis.waitReplicas) "durability" $v.redis.durability -}}
{{- if $v.redis.url -}}{{- $_ := set $redis "url" $v.redis.url -}}{{- end -}}
{{- if $v.redis.sentinels -}}
{{- $_ := set $redis "sentinels" $v.redis.sentinels -}}
{{- $_ := set $redis "master_name" $v.redis.masterName -}}
{{- end -}}
{{- if $v.redis.caSecret -}}{{- $_ := set $redis "ca_file" "/etc/ferry/redis-ca/ca.crt" -}}{{- end -}}
{{- $_ := set $cfg "store" (dict "backend" "redis" "redis" $redis) -}}
{{- else -}}
{{- $_ := set $cfg "store" (dict "backend" "embedded" "path" "/var/lib/ferry/ferry.redb") -}}
{{- end -}}
{{- $c := $v.contract -}}
{{- $contract := dict "unit" $c.unit "year_start" $c.yearStart "time_zone" $c.timeZone "currency" $c.currency "price_per_unit_over_yearly" $c.pricePerUnitOverYearly "price_per_unit_over_peak" $c.pricePerUnitOverPeak -}}
{{- if $c.hourlyPeak -}}{{- $_ := set $contract "hourly_peak" (int64 $c.hourlyPeak) -}}{{- end -}}
{{- if $c.yearlyTotal -}}{{- $_ := set $contract "yearly_total" (int64 $c.yearlyTotal) -}}{{- end -}}
{{- $_ := set $cfg "contract" $contract -}}
{{- $alerts := dict -}}
{{- if $v.alerts.webhookUrl -}}{{- $_ := set $alerts "webhook_url" $v.alerts.webhookUrl -}}{{- end -}}
{{- if $v.alerts.organisationContact -}}{{- $_ := set $alerts "organisation_contact" $v.alerts.organisationContact -}}{{- end -}}
{{- if $alerts -}}{{- $_ := set $cfg "alerts" $alerts -}}{{- end -}}
{{- if $v.dkim.relayDomain -}}{{- $_ := set $cfg "dkim" (dict "relay_domain" $v.dkim.relayDomain) -}}{{- end -}}
{{- if $v.telemetry.otlpEndpoint -}}
{{- $_ := set $cfg "telemetry" (dict "otlp_endpoint" $v.telemetry.otlpEndpoint "sample_ratio" $v.telemetry.sampleRatio) -}}
{{- end -}}
{{- include "ferry.ownedConfig" $v -}}
{{- $merged := mustMergeOverwrite $cfg (deepCopy $v.config) -}}
{{- $directory := dig "auth" "directory" dict $merged -}}
{{- if and $directory $v.directory.caSecret -}}
{{- $_ := set $directory "ca_file" "/etc/ferry/directory-ca/ca.crt" -}}
{{- end -}}
{{- include "ferry.wholeNumbers" $merged -}}
{{- toToml $merged -}}
{{- end -}}

{{/*
Helm reads every number in values as a float, and toToml writes 52428800 as
5.24288e+07, which Ferry refuses for a count: whole numbers become integers
again, in maps and lists, in place.
*/}}
{{- define "ferry.wholeNumbers" -}}
{{- $m := . -}}
{{- range $k, $v := $m -}}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) -}}
{{- $_ := set $m $k (int64 $v) -}}
{{- else if kindIs "map" $v -}}
{{- include "ferry.wholeNumbers" $v -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- $items = append $items (int64 .) -}}
{{- else -}}
{{- if kindIs "map" . }}{{ include "ferry.wholeNumbers" . }}{{ end -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $m $k $items -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment every Ferry container gets: the secrets by reference. */}}
{{- define "ferry.env" -}}
- name: FERRY_CONFIG
  value: /etc/ferry/ferry.toml
{{- if and (eq .Values.mode "cluster") .Values.redis.existingSecret }}
- name: FERRY__STORE__REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.urlKey }}
{{- end }}
{{- if .Values.directory.bindPassword.existingSecret }}
- name: FERRY__AUTH__DIRECTORY__BIND_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.directory.bindPassword.existingSecret }}
      key: {{ .Values.directory.bindPassword.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- if .Values.alerts.webhookSecret.existingSecret }}
- name: FERRY__ALERTS__WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.alerts.webhookSecret.existingSecret }}
      key: {{ .Values.alerts.webhookSecret.key }}
{{- end }}
{{- end -}}

{{/*
What a role's containers mount: delivery only the configuration, the data
and tmp volumes and Redis's CA; sessions (ingress, inbound, all) also the
certificate and the directory's CA (inbound signs no one in, but Ferry reads
auth.directory's ca_file at start). The DKIM keys are mounted only for the
init container that imports them (ingress, all). Arguments: root, role. The
data volume is the pod's. Inbound pods read their own inbound.toml.
*/}}
{{- define "ferry.volumeMounts" -}}
{{- $v := .root.Values -}}
{{- $sessions := ne .role "delivery" -}}
- name: config
  mountPath: /etc/ferry/ferry.toml
  subPath: {{ include "ferry.configKey" .role }}
  readOnly: true
- name: data
  mountPath: /var/lib/ferry
- name: tmp
  mountPath: /tmp
{{- if and $sessions (include "ferry.tlsSecret" .root) }}
- name: tls
  mountPath: /etc/ferry/tls
  readOnly: true
{{- end }}
{{- if $v.redis.caSecret }}
- name: redis-ca
  mountPath: /etc/ferry/redis-ca
  readOnly: true
{{- end }}
{{- if and $sessions $v.directory.caSecret }}
- name: directory-ca
  mountPath: /etc/ferry/directory-ca
  readOnly: true
{{- end }}
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ferry.volumes" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $sessions := ne .role "delivery" -}}
{{- $submission := has .role (list "ingress" "all") -}}
- name: config
  configMap:
    name: {{ include "ferry.fullname" $root }}
- name: tmp
  emptyDir: {}
{{- if and $sessions (include "ferry.tlsSecret" $root) }}
- name: tls
  secret:
    secretName: {{ include "ferry.tlsSecret" $root }}
{{- end }}
{{- if $v.redis.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ $v.redis.caSecret }}
{{- end }}
{{- if and $submission $v.dkim.existingSecret }}
- name: dkim
  secret:
    secretName: {{ $v.dkim.existingSecret }}
{{- end }}
{{- if and $sessions $v.directory.caSecret }}
- name: directory-ca
  secret:
    secretName: {{ $v.directory.caSecret }}
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Checksums that roll a role's pods when their configuration changes. Arguments: root, role. */}}
{{- define "ferry.checksums" -}}
checksum/config: {{ include "ferry.config" (dict "root" .root "role" .role) | sha256sum }}
{{- end -}}

{{/* The ConfigMap's key a role's pods read. Argument: the role. */}}
{{- define "ferry.configKey" -}}
{{- ternary "inbound.toml" "ferry.toml" (eq . "inbound") -}}
{{- end -}}
