{{/* The release's base name. */}}
{{- define "ferry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferry.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role: ingress, delivery or all (single mode). */}}
{{- define "ferry.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
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

{{/* Ferry's configuration (TOML): what the chart decides, then .Values.config over it. */}}
{{- define "ferry.config" -}}
{{- $v := .Values -}}
{{- $server := dict "hostname" $v.hostname "data_dir" "/var/lib/ferry" "shutdown_grace_secs" (int $v.drain.graceSeconds) -}}
{{- $listen := dict "smtp" "0.0.0.0:2525" "submission" "0.0.0.0:2587" "submissions" "0.0.0.0:2465" -}}
{{- if $v.proxyProtocol.enabled -}}
{{- $_ := set $listen "proxy_protocol_from" $v.proxyProtocol.from -}}
{{- end -}}
{{- $cfg := dict "server" $server "listen" $listen "admin" (dict "listen" (printf "0.0.0.0:%d" (int $v.admin.port))) "log" (dict "format" "json" "level" "info") "delivery" (dict "default_route" "mx") -}}
{{- if include "ferry.tlsSecret" . -}}
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

{{/* Volumes every Ferry pod mounts; the data volume is the caller's. */}}
{{- define "ferry.volumeMounts" -}}
- name: config
  mountPath: /etc/ferry/ferry.toml
  subPath: ferry.toml
  readOnly: true
- name: data
  mountPath: /var/lib/ferry
- name: tmp
  mountPath: /tmp
{{- if include "ferry.tlsSecret" . }}
- name: tls
  mountPath: /etc/ferry/tls
  readOnly: true
{{- end }}
{{- if .Values.redis.caSecret }}
- name: redis-ca
  mountPath: /etc/ferry/redis-ca
  readOnly: true
{{- end }}
{{- if .Values.directory.caSecret }}
- name: directory-ca
  mountPath: /etc/ferry/directory-ca
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ferry.volumes" -}}
- name: config
  configMap:
    name: {{ include "ferry.fullname" . }}
- name: tmp
  emptyDir: {}
{{- if include "ferry.tlsSecret" . }}
- name: tls
  secret:
    secretName: {{ include "ferry.tlsSecret" . }}
{{- end }}
{{- if .Values.redis.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.caSecret }}
{{- end }}
{{- if .Values.dkim.existingSecret }}
- name: dkim
  secret:
    secretName: {{ .Values.dkim.existingSecret }}
{{- end }}
{{- if .Values.directory.caSecret }}
- name: directory-ca
  secret:
    secretName: {{ .Values.directory.caSecret }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "ferry.checksums" -}}
checksum/config: {{ include "ferry.config" . | sha256sum }}
{{- end -}}
