{{/*
The pod of one role. Arguments: root (the chart's context), role (ingress,
delivery, inbound or all), part (that role's values: resources, scheduling).
*/}}
{{- define "ferry.pod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $submission := has .role (list "ingress" "all") -}}
metadata:
  labels:
    {{- include "ferry.selector" . | nindent 4 }}
    {{- with $v.commonLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- include "ferry.checksums" . | nindent 4 }}
    {{- if not $v.serviceMonitor.enabled }}
    # Scraped by annotation only where no ServiceMonitor does: never twice.
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.admin.port | quote }}
    {{- end }}
    {{- with $v.commonAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ferry.serviceAccountName" $root }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ include "ferry.terminationGrace" $root }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if and $submission (or $v.dkim.existingSecret $v.adminToken.existingSecret) }}
  initContainers:
    {{- if $v.dkim.existingSecret }}
    - name: import-dkim-keys
      image: {{ include "ferry.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["dkim", "import", "/etc/ferry/dkim"]
      env:
        {{- include "ferry.env" $root | nindent 8 }}
      resources:
        {{- toYaml $v.initResources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "ferry.volumeMounts" . | nindent 8 }}
        - name: dkim
          mountPath: /etc/ferry/dkim
          readOnly: true
    {{- end }}
    {{- if $v.adminToken.existingSecret }}
    - name: import-admin-token
      image: {{ include "ferry.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["token", "import", "--name", "helm", "--role", "admin", "--from-env", "FERRY_IMPORTED_TOKEN"]
      env:
        {{- include "ferry.env" $root | nindent 8 }}
        - name: FERRY_IMPORTED_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $v.adminToken.existingSecret }}
              key: {{ $v.adminToken.key }}
      resources:
        {{- toYaml $v.initResources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "ferry.volumeMounts" . | nindent 8 }}
    {{- end }}
  {{- end }}
  containers:
    - name: ferry
      image: {{ include "ferry.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["serve", "--role", {{ .role | quote }}]
      env:
        {{- include "ferry.env" $root | nindent 8 }}
      ports:
        {{- if $submission }}
        - {name: smtp, containerPort: 2525, protocol: TCP}
        - {name: submission, containerPort: 2587, protocol: TCP}
        - {name: submissions, containerPort: 2465, protocol: TCP}
        {{- if $v.directSubmission.enabled }}
        - {name: direct-submit, containerPort: 2588, protocol: TCP}
        {{- end }}
        {{- end }}
        {{- if and (include "ferry.inbound" $root) (has .role (list "inbound" "all")) }}
        - {name: inbound, containerPort: 2526, protocol: TCP}
        {{- end }}
        - {name: admin, containerPort: {{ $v.admin.port }}, protocol: TCP}
      startupProbe:
        httpGet: {path: /readyz, port: admin}
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: {path: /livez, port: admin}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /readyz, port: admin}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      {{- if gt (int $v.drain.preStopSeconds) 0 }}
      lifecycle:
        # Endpoints are removed while the pod sleeps, so the balancer stops
        # sending new sessions before SIGTERM closes the listeners.
        preStop:
          sleep:
            seconds: {{ $v.drain.preStopSeconds }}
      {{- end }}
      resources:
        {{- toYaml .part.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "ferry.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "ferry.volumes" . | nindent 4 }}
    - name: data
      {{- if eq .role "all" }}
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-data" (include "ferry.fullname" $root)) $v.persistence.existingClaim }}
      {{- else }}
      emptyDir: {}
      {{- end }}
  topologySpreadConstraints:
    {{- with .part.topologySpreadConstraints }}
    {{- toYaml . | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "ferry.selector" . | nindent 10 }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "ferry.selector" . | nindent 10 }}
    {{- end }}
  {{- with .part.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .part.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .part.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
