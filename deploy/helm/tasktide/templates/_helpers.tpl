{{/* Names and labels shared by every object of the chart. */}}

{{- define "tasktide.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tasktide.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" NAME). */}}
{{- define "tasktide.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tasktide.labels" -}}
{{ include "tasktide.selectorLabels" . }}
helm.sh/chart: {{ include "tasktide.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "tasktide.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{- define "tasktide.redisSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "tasktide.fullname" .)) -}}
{{- end -}}

{{/* Where the services are reached inside the cluster. */}}
{{- define "tasktide.address" -}}
{{- printf "%s-%s:%d" (include "tasktide.fullname" .root) .component (int .root.Values.grpcPort) -}}
{{- end -}}

{{/* TASKTIDE_REDIS_URL from the Secret, as an item of a container's env. */}}
{{- define "tasktide.redisEnv" -}}
- name: TASKTIDE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tasktide.redisSecret" . }}
      key: {{ if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}TASKTIDE_REDIS_URL{{ end }}
{{- end -}}

{{- define "tasktide.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Pod placement: pass the component's values. */}}
{{- define "tasktide.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
